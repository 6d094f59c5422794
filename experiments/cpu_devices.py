"""Splitting the host CPU into several XLA devices, from a launcher's command line.

XLA reads XLA_FLAGS once, when JAX starts its backend, and importing gymnax or roboscape_jax
already starts it; so a launcher calls `cpu_devices_from_argv` before those imports. Only os, re
and sys here, for that reason.
"""

import os
import re
import sys

FLAG = "--cpu_devices"


def _request_cpu_devices(count: int) -> None:
    """Asks XLA for `count` host CPU devices (replacing any count already in XLA_FLAGS)."""
    flags = re.sub(r"--xla_force_host_platform_device_count=\S*", "",
                   os.environ.get("XLA_FLAGS", "")).split()
    os.environ["XLA_FLAGS"] = " ".join([f"--xla_force_host_platform_device_count={count}", *flags])


def _count_in_xla_flags() -> int | None:
    found = re.findall(r"--xla_force_host_platform_device_count=(\d+)",
                       os.environ.get("XLA_FLAGS", ""))
    return int(found[-1]) if found else None


def cpu_devices_from_argv(default: int, argv: list[str] | None = None) -> int:
    """The last `--cpu_devices=N` of argv, requested from XLA when above 1; without the flag, a
    count XLA_FLAGS already holds (a test's or a user's), else `default`. The launcher also
    defines the flag with absl, for --help and validation."""
    argv = sys.argv[1:] if argv is None else argv
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"{FLAG}=")]
    if not values and _count_in_xla_flags() is not None:
        return _count_in_xla_flags()
    try:
        count = int(values[-1]) if values else default
    except ValueError:
        raise ValueError(f"{FLAG} must be an integer, got {values[-1]!r}") from None
    if count < 1:
        raise ValueError(f"{FLAG} must be >= 1, got {count}")
    if count > 1:
        _request_cpu_devices(count)
    return count
