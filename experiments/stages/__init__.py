"""Pipeline stages that join the data pipeline to the library (each `run(config, out_dir)`)."""

from typing import Any


def trainer_parallel(config, trainer: str) -> dict[str, Any]:
    """The trainers' `parallel` mapping for `trainer` ("tokenizer" or "world_models"): the
    pipeline's `parallel` section with that trainer's device count as `num_devices`."""
    parallel = dict(config.get("parallel") or {})
    devices = dict(parallel.pop("devices", None) or {})
    return {**parallel, "num_devices": devices.get(trainer, 0)}
