"""`paper`: the paper's sizes (section 4.1 and the authors' code), sharded over many devices.

python -m experiments.main --config=experiments/configs/paper.py --workdir=gs://.../paper
"""

from experiments.configs import common
from experiments.configs.tokenizer import tokenizer_config
from experiments.configs.world_model import world_model_config


def get_config(arg: str | None = None):
    del arg
    config = common.pipeline_config()
    config.variant = "paper"
    config.simulator.image_size = 128  # two stacked views -> 256x128 frames, 16x16 tokens
    config.data.image_size = 128
    config.tokenizer = tokenizer_config("paper")
    config.tokenizer.input.update(frame_height=256, frame_width=128)  # two stacked 128px views
    config.data.scenes_per_split = 40  # 80 scenes: 20 objects x 2 containers x 2 tables
    config.data.episodes_per_task_scene = 1000  # 500 optimal + 500 sub-optimal
    config.data.ood_episodes_per_task_scene = None  # as many as in-domain
    for control in ("action", "text"):  # 256x128 frames / 16 = 16x8 tokens
        config.world_models[control] = world_model_config("paper", control)
    config.parallel.fsdp = True  # 32 blocks of width 512 and their Adam moments: split them
    config.world_model_eval.reward_fit_episodes = None  # the baselines fit on every train episode
    common.with_reward_baselines(config)  # Fig. 2's embedding and proxy PPO runs
    config.log_every_steps = 100
    config.progress_every_s = 60.0
    return config
