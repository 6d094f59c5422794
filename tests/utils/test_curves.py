"""Training-curve PNGs from a run's metrics.jsonl."""

import json
import os

import numpy as np
from PIL import Image

from roboscape_jax.utils import curves


def _write_rows(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def test_smooth_is_a_trailing_mean():
    np.testing.assert_allclose(curves.smooth(np.array([1.0, 2, 3, 4, 5]), 2),
                               [1.0, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(curves.smooth(np.array([3.0, 1.0]), 5), [3.0, 2.0])


def test_series_split_train_and_held_out_and_drop_non_finite():
    rows = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": float("nan")},
            {"step": 3, "loss": 1.0, "lpips": 0.5}, {"step": 3, "eval/lpips": 0.4}]
    loss = curves.curve_series(rows, "loss")
    assert set(loss) == {"train"}
    np.testing.assert_array_equal(loss["train"][0], [1, 3])
    lpips = curves.curve_series(rows, "lpips")
    assert set(lpips) == {"train", "held_out"}
    np.testing.assert_allclose(lpips["held_out"][1], [0.4])
    assert curves.curve_series(rows, "psnr") == {}


def test_png_has_one_panel_per_logged_metric(tmp_path):
    metrics = str(tmp_path / "metrics.jsonl")
    _write_rows(metrics, [{"step": s, "loss": 1.0 / s, "l1": 0.1} for s in range(1, 30)]
                + [{"step": 10, "eval/lpips": 0.3}, {"step": 20, "eval/lpips": 0.2}])
    out = str(tmp_path / "curves.png")
    plotted = curves.write_training_curves(metrics, out, ("loss", "lpips", "psnr", "l1"))
    assert plotted == ["loss", "lpips", "l1"]
    width, height = Image.open(out).size
    assert width > height > 0  # one row of three panels
    assert curves.write_training_curves(str(tmp_path / "missing.jsonl"),
                                        str(tmp_path / "none.png"), ("loss",)) == []
    assert not os.path.exists(tmp_path / "none.png")


def test_baseline_is_drawn_into_its_panel_only_when_asked(tmp_path, monkeypatch):
    metrics = str(tmp_path / "metrics.jsonl")
    _write_rows(metrics, [{"step": s, "token_accuracy": 0.5} for s in range(1, 30)]
                + [{"step": s, "eval/copy_accuracy": 0.9} for s in (10, 20)])
    import matplotlib.axes

    drawn = []
    original = matplotlib.axes.Axes.plot

    def spy(self, *args, **kwargs):
        drawn.append(kwargs.get("label"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    out = str(tmp_path / "curves.png")
    plotted = curves.write_training_curves(metrics, out, ("token_accuracy",),
                                           baselines=curves.WORLD_MODEL_BASELINES)
    assert plotted == ["token_accuracy"]
    assert "copying" in drawn
    drawn.clear()
    curves.write_training_curves(metrics, out, ("token_accuracy",))
    assert "copying" not in drawn
