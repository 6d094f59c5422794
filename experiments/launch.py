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


def define_cpu_devices_flag(default: int) -> flags.FlagHolder:
    """`--cpu_devices` for a trainer launcher that called `cpu_devices.cpu_devices_from_argv`
    before importing JAX (which is where the value takes effect; absl only validates it here)."""
    return flags.DEFINE_integer(
        "cpu_devices", default,
        "XLA devices to split a host CPU into (default: one per core; read before absl parses "
        "flags); the trainers are data-parallel over them. 1 leaves XLA_FLAGS alone. GPUs and "
        "TPUs are not affected.")


_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None,
    "Multi-host: host:port of process 0, passed with --num_processes and --process_id to "
    "jax.distributed.initialize (README: Multi-host).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False,
    "Multi-host with the cluster's own settings: jax.distributed.initialize() with no arguments "
    "(SLURM, Cloud TPU, ...).")


def initialize_distributed() -> None:
    """Starts JAX's distributed runtime when the multi-host flags ask for it (call first in
    `main`, before any JAX computation); a single-process run does nothing. Every process then
    sees every process's devices in `jax.devices()`, and the trainers' mesh spans them all."""
    import jax

    given = {"--coordinator_address": _COORDINATOR.value, "--num_processes": _NUM_PROCESSES.value,
             "--process_id": _PROCESS_ID.value}
    if not any(v is not None for v in given.values()) and not _DISTRIBUTED.value:
        return
    # collectives between CPU processes (tests, laptops); GPUs and TPUs ignore it
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    else:
        missing = [name for name, value in given.items() if value is None]
        if missing:
            raise flags.ValidationError(f"multi-host launch needs {', '.join(given)} together; "
                                        f"missing {', '.join(missing)}")
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    print(f"process {jax.process_index()} of {jax.process_count()}: "
          f"{jax.local_device_count()} local of {jax.device_count()} devices", flush=True)
