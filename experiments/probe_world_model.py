"""What a trained action world model knows about the next frame, beyond its greedy accuracy.

  python -m experiments.probe_world_model --workdir=runs/tiny --split=val

On fixed held-out windows, with the last frame fully masked (the first MaskGIT pass), prints:
  where  AUROC of the model's change probability 1 - p(previous code) for the tokens that change;
  what   on the tokens that change, how often the most likely code other than the previous one
         (top-1 / top-5) is the real one, against the most frequent flip pattern of the data;
  decode overall and changed-token accuracy when a token takes its best non-copy code wherever
         the change probability exceeds a threshold (what a decode-time copy penalty buys);
  action how much the predictions depend on the action: the mean total-variation distance
         between the code distributions under the real actions and under zero actions.
Greedy decoding shows none of this when copying wins every token (docs/performance_history.md).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from experiments.configs import tiny
from experiments.stages.world_model import load_cache
from roboscape_jax.world_model import data
from roboscape_jax.world_model import train as wm_train
from roboscape_jax.world_model.losses import auroc

_WORKDIR = flags.DEFINE_string("workdir", "runs/tiny", "Pipeline workdir with train_world_models.")
_SPLIT = flags.DEFINE_enum("split", "val", ["train", "val", "ood"], "Token-cache split.")
_WINDOWS = flags.DEFINE_integer("windows", 256, "Held-out windows (a multiple of 64).")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    config = tiny.get_config().world_models["action"]
    out_dir = os.path.join(_WORKDIR.value, "train_world_models")
    model, params = wm_train.restore_params(os.path.join(out_dir, "action"), config)
    windows = data.fixed_windows(load_cache(out_dir, _SPLIT.value), num_windows=_WINDOWS.value,
                                 num_frames=config.model.num_frames, control="action", seed=0)

    use_margins = model.config.margin_inputs

    @jax.jit
    def code_probs(tokens, actions, margins):
        mask = jnp.zeros(tokens.shape, bool).at[:, -1].set(True)
        logits = model.apply(params, tokens, actions, None, mask, margins).logits[:, -1]
        if logits.shape[-2] != 1:
            raise ValueError("the probe reads single-factor (one softmax per code) models")
        return jax.nn.softmax(logits[..., 0, :], -1)  # [B, h, w, V]

    margins = windows["margins"] if use_margins else None

    def probs(actions):
        return np.concatenate([np.asarray(code_probs(
            windows["tokens"][i:i + 64], actions[i:i + 64],
            None if margins is None else margins[i:i + 64]))
            for i in range(0, len(actions) - len(actions) % 64, 64)])

    p = probs(windows["actions"])
    n = len(p)
    target, previous = windows["tokens"][:n, -1], windows["tokens"][:n, -2]
    changed = target != previous
    p_copy = np.take_along_axis(p, previous[..., None], -1)[..., 0]
    others = p.copy()
    np.put_along_axis(others, previous[..., None], -1.0, -1)
    ranked = np.argsort(-others, -1)[..., :5]
    flips = (target ^ previous)[changed]
    print(f"{_SPLIT.value}: {n} windows, {changed.mean():.3f} of tokens change")
    print(f"where: AUROC of the change probability for changing tokens "
          f"{auroc(1 - p_copy, changed):.3f}")
    print(f"what: best non-copy code right on changing tokens top-1 "
          f"{np.mean((ranked[..., 0] == target)[changed]):.3f}, top-5 "
          f"{np.mean((ranked == target[..., None]).any(-1)[changed]):.3f}; most frequent flip "
          f"pattern {np.bincount(flips).max() / len(flips):.3f} of changes")
    for threshold in (0.3, 0.5, 0.7):
        pred = np.where(1 - p_copy > threshold, ranked[..., 0], previous)
        print(f"decode: change where p > {threshold}: accuracy {np.mean(pred == target):.4f}, "
              f"changed-token accuracy {np.mean((pred == target)[changed]):.4f} "
              f"(copy {np.mean(previous == target):.4f})")
    zero = probs(np.zeros_like(windows["actions"]))
    print(f"action: mean total variation between real- and zero-action code distributions "
          f"{0.5 * np.abs(p - zero).sum(-1).mean():.4f}; greedy codes that differ "
          f"{np.mean(p.argmax(-1) != zero.argmax(-1)):.4f}")


if __name__ == "__main__":
    app.run(main)
