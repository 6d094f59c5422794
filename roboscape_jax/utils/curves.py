"""Training curves as a PNG: one panel per metric, from a run's `metrics.jsonl`.

  write_training_curves(os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir,
                        "curves.png"), TOKENIZER_PANELS, title="tokenizer")

A panel plots the training metric (its logged rows, lightly smoothed) and, where the run logs it,
the held-out value of the same name (`eval/<name>`) as markers, against the step; its y range
leaves out the first 5% of steps, whose early values would flatten the rest. The trainers
write theirs at the end of a run, so a finished run can be looked at without TensorBoard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from roboscape_jax.utils.files import atomic_path
from roboscape_jax.utils.metrics import read_jsonl

TOKENIZER_PANELS = ("loss", "l1", "lpips", "psnr", "ssim", "code_usage",
                    "adversarial_generator", "discriminator_loss", "static_flip_rate")
WORLD_MODEL_PANELS = ("loss", "visual_loss", "token_accuracy", "changed_token_accuracy",
                      "done_rmse", "done_auroc")
# A baseline drawn into a panel: token accuracy means little without copying's beside it
WORLD_MODEL_BASELINES = {"token_accuracy": ("copy_accuracy", "copying")}


def curve_series(rows: Sequence[dict], name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (steps, values), "held_out": (steps, values)} of metric `name` (`eval/<name>`
    for held-out), each present only where the rows log it; non-finite values are dropped."""
    out = {}
    for kind, key in (("train", name), ("held_out", f"eval/{name}")):
        points = [(r["step"], r[key]) for r in rows
                  if key in r and "step" in r and np.isfinite(r[key])]
        if points:
            steps, values = map(np.asarray, zip(*points, strict=True))
            out[kind] = (steps, values.astype(np.float64))
    return out


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to `window` values (the first ones average what exists so far)."""
    csum = np.cumsum(np.insert(np.asarray(values, np.float64), 0, 0.0))
    end = np.arange(1, len(values) + 1)
    begin = np.maximum(end - window, 0)
    return (csum[end] - csum[begin]) / (end - begin)


def write_training_curves(metrics_path: str, out_path: str, panels: Sequence[str], *,
                          title: str = "", smooth_window: int = 5,
                          baselines: Mapping[str, tuple[str, str]] | None = None) -> list[str]:
    """Writes `out_path` (PNG) with one panel per name in `panels` that the run logged; returns
    the names plotted (none: no file written). `baselines`: panel -> (metric, label) of a
    baseline drawn into that panel as a dashed line (its held-out values, else its training
    values, smoothed)."""
    rows = read_jsonl(metrics_path)
    baselines = baselines or {}
    series = {name: s for name in panels if (s := curve_series(rows, name))}
    if not series:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(series))
    nrows = -(-len(series) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.4 * nrows), squeeze=False)
    for ax, (name, s) in zip(list(axes.flat)[:len(series)], series.items(), strict=True):
        if "train" in s:
            steps, values = s["train"]
            ax.plot(steps, values, color="tab:blue", alpha=0.25, lw=0.8)
            ax.plot(steps, smooth(values, smooth_window), color="tab:blue", lw=1.2, label="train")
        if "held_out" in s:
            steps, values = s["held_out"]
            ax.plot(steps, values, "o-", color="tab:orange", ms=3, lw=1.0, label="held out")
        if name in baselines and (b := curve_series(rows, baselines[name][0])):
            steps, values = b.get("held_out", b.get("train"))
            values = values if "held_out" in b else smooth(values, smooth_window)
            ax.plot(steps, values, "--", color="tab:gray", lw=1.0, label=baselines[name][1])
            s = {**s, "baseline": (steps, values)}
        late = np.concatenate([v[st >= 0.05 * st.max()] for st, v in s.values()])
        if late.size and np.ptp(late) > 0:  # the first 5% of steps would flatten the rest
            pad = 0.05 * np.ptp(late)
            ax.set_ylim(late.min() - pad, late.max() + pad)
        if len(s) >= 2:
            ax.legend(fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(series):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return list(series)
