"""`base`: one GPU (e.g. one H100); larger images and models than `tiny`.

python -m experiments.main --config=experiments/configs/base.py --workdir=runs/base
"""

from experiments.configs import common
from experiments.configs.tokenizer import tokenizer_config
from experiments.configs.world_model import world_model_config


def get_config(arg: str | None = None):
    del arg
    config = common.pipeline_config()
    config.variant = "base"
    config.simulator.image_size = 128
    config.data.image_size = 128
    config.tokenizer = tokenizer_config("base")
    config.tokenizer.input.update(frame_height=256, frame_width=128)  # two stacked 128px views
    config.data.scenes_per_split = 8
    config.data.episodes_per_task_scene = 50
    config.data.ood_episodes_per_task_scene = None  # as many as in-domain
    for control in ("action", "text"):  # 256x128 frames / 8 = 32x16 tokens
        config.world_models[control] = world_model_config("base", control)
        config.world_models[control].model.update(grid_height=32, grid_width=16)
    config.world_model_eval.reward_fit_episodes = None  # the baselines fit on every train episode
    common.with_reward_baselines(config)  # Fig. 2's embedding and proxy PPO runs
    config.log_every_steps = 50
    config.progress_every_s = 30.0
    return config
