"""MetricWriter (JSONL + TensorBoard, resume truncation) and Progress (rate, ETA)."""

import io
import os

import numpy as np
import pytest

from roboscape_jax.utils.metrics import MetricWriter, read_jsonl
from roboscape_jax.utils.progress import Progress, format_duration


def test_writer_logs_rows_and_event_files(tmp_path):
    with MetricWriter(str(tmp_path)) as writer:
        writer.write_scalars(1, {"loss": np.float32(0.5), "acc": 1})
        writer.write_scalars(2, {"loss": float("nan")})
        writer.write_images(2, {"grid": np.zeros((8, 8, 3), np.uint8)})
    assert read_jsonl(tmp_path / "metrics.jsonl") == [
        {"step": 1, "loss": 0.5, "acc": 1.0},
        {"step": 2, "loss": None},
    ]
    events = os.listdir(tmp_path / "tensorboard")
    assert any(name.startswith("events.out.tfevents") for name in events)


def test_resume_drops_rows_after_the_checkpoint(tmp_path):
    with MetricWriter(str(tmp_path), tensorboard=False) as writer:
        for step in range(1, 6):
            writer.write_scalars(step, {"loss": step})
    with MetricWriter(str(tmp_path), resume_step=3, tensorboard=False) as writer:
        writer.write_scalars(4, {"loss": 40})
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 1), (2, 2), (3, 3), (4, 40)]


def test_non_scalar_metric_is_rejected(tmp_path):
    with MetricWriter(str(tmp_path), tensorboard=False) as writer:
        with pytest.raises(ValueError, match="'loss' must be a scalar"):
            writer.write_scalars(1, {"loss": np.zeros(3)})


def test_progress_reports_rate_and_eta_excluding_first_step():
    now = [0.0]
    out = io.StringIO()
    progress = Progress(100, "train", every_s=0.0, stream=out, clock=lambda: now[0])
    now[0] = 30.0  # the first step compiles
    progress.update(10)
    now[0] = 40.0
    line = progress.update(20, {"loss": 0.25})
    assert line == "train 30/100 (30%) 2.00 steps/s elapsed 40.0s ETA 35.0s loss=0.25".replace(
        "steps", "it"
    )
    assert out.getvalue().count("\n") == 2


def test_progress_shows_slow_loops_in_seconds_per_unit():
    now = [0.0]
    progress = Progress(40, "ppo", every_s=0.0, stream=io.StringIO(), clock=lambda: now[0],
                        unit="updates")
    now[0] = 300.0
    assert "? updates/s" in progress.update(4)  # only the compiling chunk so far
    now[0] = 568.0
    assert " 67.0 s/update " in progress.update(4)


def test_progress_throttles_and_always_prints_the_end():
    now = [0.0]
    progress = Progress(3, "x", every_s=100.0, stream=io.StringIO(), clock=lambda: now[0])
    assert progress.update() is not None  # first line
    assert progress.update() is None
    assert progress.update() is not None  # finished


@pytest.mark.parametrize("seconds,text", [(7.25, "7.2s"), (258, "4m18s"), (3720, "1h02m")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
