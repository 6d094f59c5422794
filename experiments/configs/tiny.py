"""`tiny`: the whole pipeline on 2 CPU cores within the stage budgets of the issues.

  python -m experiments.main --config=experiments/configs/tiny.py --workdir=runs/tiny
  python -m experiments.main --config=experiments/configs/tiny.py:debug --workdir=/tmp/dbg

`debug` shrinks every stage so a run finishes in seconds (tests use it).
"""

from experiments.configs import common
from experiments.configs.ppo_world_model import ppo_world_model_config
from experiments.configs.sft import sft_config
from experiments.configs.tokenizer import tokenizer_config
from experiments.configs.world_model import world_model_config


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, debug=False)
    config = common.pipeline_config()
    config.variant = "tiny"
    # The launcher splits the 2-core CPU into one XLA device per core (`--cpu_devices`): the
    # action model's batch of 16 steps 1.3x faster split over the two (1.19 -> 0.91 s in the
    # benchmark), the tokenizer's batch of 8 faster whole (0.41 s whole, 0.52 s split).
    config.parallel.devices.tokenizer = 1
    if arg.debug:
        config.variant = "tiny:debug"
        config.simulator.tasks = ("push",)
        config.simulator.check_steps = 2
        config.progress_every_s = 0.0
        config.data.scenes_per_split = 1
        config.data.episodes_per_task_scene = 1
        config.data.ood_episodes_per_task_scene = 1
        config.tokenizer = tokenizer_config("debug")
        # the reference-conditioned tokenizer (an option `tiny` leaves off), so the debug
        # pipeline runs every stage's first-frame plumbing end to end
        config.tokenizer.model.update(reference_conditioning=True, reference_copy_gate=True)
        config.tokenizer.loss.moving_weight = 4.0  # as `tiny`
        config.world_models.action = world_model_config("debug", "action")
        config.world_models.text = world_model_config("debug", "text")
        config.world_model_eval.update(horizon=2, starts_per_episode=1, golden_horizon=3,
                                       reward_fit_steps=20, reward_fit_episodes=2,
                                       batch_size=4, num_videos=1)
        config.sft = sft_config("debug")
        config.sft.observation_frames = "tokenized"
        config.ppo_world_model = ppo_world_model_config("debug")
        config.ppo_world_model.use_chosen_copy_penalty = True
        config.ppo_world_model.use_chosen_maskgit_steps = True
        config.ppo_maniskill.update(tasks=("push",), max_steps=3, match_wall_time=False)
        config.ppo_maniskill.ppo.update(num_steps=4, total_timesteps=8, update_epochs=1,
                                        num_minibatches=2)
        config.evaluate.update(tasks=("push",), episodes_per_task=1, max_steps=3,
                               num_strip_frames=2)
    return config
