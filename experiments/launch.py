"""Flag parsing shared by the launchers: bad `--config.*` overrides become one clear line.

ml_collections reports an override of a field the config does not have as a bare
`AttributeError: "'colour'"` traceback; `parse_flags` names the flag and the config instead.
"""

from __future__ import annotations

import sys

from absl import flags


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing for `app.run(main, flags_parser=parse_flags)`."""
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as err:
        field = str(err).strip("\"'")
        overrides = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
        sys.exit(
            f"FATAL Flags parsing error: unknown config field '{field}' in one of "
            f"{overrides}; check the field names against the config file"
        )
    except flags.Error as err:
        sys.exit(
            f"FATAL Flags parsing error: {err}\nPass --helpshort or --helpfull to see help "
            "on flags."
        )
