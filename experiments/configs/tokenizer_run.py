"""Config of the stand-alone tokenizer launcher (until the pipeline config has a tokenizer section).

  python -m experiments.train_tokenizer --config=experiments/configs/tokenizer_run.py \
      --workdir=runs/tokenizer_tiny
  python -m experiments.train_tokenizer --config=experiments/configs/tokenizer_run.py:debug \
      --workdir=/tmp/tok_dbg
  python -m experiments.train_tokenizer \
      --config=experiments/configs/tokenizer_run.py:variant=base,frames=runs/frames.npz \
      --workdir=runs/tokenizer_base

Args: `variant` (debug/tiny/base/paper), `debug` (= variant debug), `frames` (an .npz with
uint8 [N, H, W, 3] under "frames"; when it does not exist, `synthetic` toy frames stand in,
for development only).
"""

from experiments.configs import common
from experiments.configs.tokenizer import tokenizer_config


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, variant="tiny", debug=False, frames="runs/frames_sample.npz",
                           synthetic=2000)
    variant = "debug" if arg.debug else arg.variant
    config = common.pipeline_config()
    config.variant = f"tokenizer:{variant}"
    config.tokenizer = tokenizer_config(variant)
    config.frames_path = arg.frames
    config.num_synthetic_frames = 64 if variant == "debug" else arg.synthetic
    if variant == "debug":
        config.progress_every_s = 0.0
    return config
