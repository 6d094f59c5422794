"""Config of the stand-alone world-model launcher.

  python -m experiments.train_world_model --config=experiments/configs/world_model_run.py \
      --workdir=runs/world_model_action_tiny
  python -m experiments.train_world_model \
      --config=experiments/configs/world_model_run.py:control=text,tokens=runs/token_cache \
      --workdir=runs/world_model_text_tiny
  python -m experiments.train_world_model --config=experiments/configs/world_model_run.py:debug \
      --workdir=/tmp/wm_dbg

Args: `variant` (debug/tiny/base/paper), `debug` (= variant debug), `control` (action/text),
`tokens` (a token cache folder whose episode .npz files hold tokens, actions, done and, for the
text model, text/text_mask; when it does not exist, `synthetic` toy episodes of moving blobs stand
in, for development only).
"""

from experiments.configs import common
from experiments.configs.world_model import world_model_config


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, variant="tiny", debug=False, control="action",
                           tokens="runs/token_cache", synthetic=200)
    variant = "debug" if arg.debug else arg.variant
    config = common.pipeline_config()
    config.variant = f"world_model:{variant}:{arg.control}"
    config.world_model = world_model_config(variant, arg.control)
    config.token_cache = arg.tokens
    config.num_synthetic_episodes = 12 if variant == "debug" else arg.synthetic
    if variant == "debug":
        config.progress_every_s = 0.0
    return config
