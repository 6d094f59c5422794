"""Metrics to TensorBoard event files and to one JSON line per logged step.

`metrics.jsonl` is what scripts and reports read; the event files are for people in TensorBoard.
When a run resumes from step s, rows logged after s by the interrupted run are dropped first, so the
file reads as if the run had never stopped.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

import numpy as np


def _to_float(name: str, value: Any) -> float:
    array = np.asarray(value)
    if array.size != 1:
        raise ValueError(f"metric {name!r} must be a scalar, got shape {array.shape}")
    return float(array.reshape(()))


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """All rows of a metrics JSONL file (an empty list when it does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricWriter:
    """Writes scalars (and image grids) for a run in `workdir`.

    Args:
      workdir: run folder; `metrics.jsonl` and `tensorboard/` go there.
      resume_step: the step a resumed run restarts after; later rows are removed.
      tensorboard: also write TensorBoard event files.
    """

    def __init__(self, workdir: str, *, resume_step: int | None = None, tensorboard: bool = True):
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, "metrics.jsonl")
        if resume_step is not None:
            self._truncate_after(resume_step)
        self._file = open(self.path, "a")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter  # Pure Python: no TensorFlow needed.

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step)

    def _truncate_after(self, step: int) -> None:
        rows = [r for r in read_jsonl(self.path) if r["step"] <= step]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        os.replace(tmp, self.path)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> dict[str, float]:
        """Logs one row; non-finite values are kept (as null in JSON) so a NaN is visible."""
        row = {name: _to_float(name, value) for name, value in scalars.items()}
        json_row = {k: (v if math.isfinite(v) else None) for k, v in row.items()}
        self._file.write(json.dumps({"step": int(step), **json_row}) + "\n")
        self._file.flush()
        if self._tb is not None:
            for name, value in row.items():
                self._tb.add_scalar(name, value, int(step))
        return row

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        """Logs HWC uint8 or [0, 1] float images to TensorBoard."""
        if self._tb is None:
            return
        for name, image in images.items():
            image = np.asarray(image)
            if image.ndim != 3:
                raise ValueError(f"image {name!r} must be [H, W, C], got shape {image.shape}")
            self._tb.add_image(name, image, int(step), dataformats="HWC")

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> "MetricWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
