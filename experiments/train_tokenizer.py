"""Trains the visual tokenizer (issue 4) and writes its held-out evaluation.

  python -m experiments.train_tokenizer --config=experiments/configs/tokenizer_run.py \
      --workdir=runs/tokenizer_tiny

Any config with a `tokenizer` section and a `frames_path` works. The run resumes from `workdir`;
it writes `config.json`, `run_info.json`, `metrics.jsonl`, `checkpoints/`, TensorBoard files and
`eval/{metrics.json,reconstructions.png}` there.
"""

import os

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from experiments.launch import initialize_distributed, parse_flags
from roboscape_jax.tokenizer.frames import ArrayFrameSource, load_frames_npz, synthetic_frames
from roboscape_jax.tokenizer.train import train_and_evaluate
from roboscape_jax.utils import sharding
from roboscape_jax.utils.provenance import write_run_provenance

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config with a tokenizer section.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (resumed when it has checkpoints).")
flags.mark_flags_as_required(["config", "workdir"])


def frames_source(config) -> ArrayFrameSource:
    """The frames of `config.frames_path`, or synthetic toy frames when that file is absent."""
    held_out = config.tokenizer.input.held_out_fraction
    if config.frames_path and os.path.exists(config.frames_path):
        with np.load(config.frames_path) as data:  # optional "episode_lengths" [episodes]
            lengths = data["episode_lengths"] if "episode_lengths" in data else None
        return ArrayFrameSource(load_frames_npz(config.frames_path), held_out, lengths)
    logging.warning("no frames at %r: training on %d synthetic toy frames (development only)",
                    config.frames_path, config.num_synthetic_frames)
    inp = config.tokenizer.input
    frames = synthetic_frames(config.num_synthetic_frames, inp.frame_height, inp.frame_width,
                              seed=config.seed)
    return ArrayFrameSource(frames, held_out, [len(frames)])  # one continuous toy episode


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint file at INFO.
    initialize_distributed()
    config, workdir = _CONFIG.value, _WORKDIR.value
    if "tokenizer" not in config:
        raise app.UsageError("the config has no tokenizer section; use "
                             "experiments/configs/tokenizer_run.py")
    if sharding.is_primary():  # one writer per run folder (multi-host)
        write_run_provenance(workdir, config)
    train_and_evaluate(config.tokenizer, workdir, frames_source(config),
                       parallel=config.get("parallel"))
    print(f"held-out evaluation: {os.path.join(workdir, 'eval', 'metrics.json')}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
