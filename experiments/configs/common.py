"""The pipeline config shared by `tiny`, `base` and `paper`; each variant overrides a few fields.

Sections follow the pipeline's stages. Fields for stages that do not exist yet are not declared:
an override of an unknown field fails, so a config never silently carries settings nothing reads.
"""

from __future__ import annotations

import ml_collections

from experiments.configs.tokenizer import tokenizer_config
from experiments.configs.world_model import world_model_config

# The four tasks of the paper (section 4.1); data_pipeline.scenes.TASKS holds the same names (the
# configs do not import the simulator side).
PAPER_TASKS = ("pick_and_place", "push", "pull", "move_to_target")


def parse_arg(arg: str | None, **defaults):
    """Parses `key=value,flag` strings from `--config=file.py:arg` into a ConfigDict of `defaults`.

    A bare `flag` sets a boolean default to True. Unknown keys raise ValueError.
    """
    result = ml_collections.ConfigDict(dict(defaults))
    for item in filter(None, (arg or "").split(",")):
        key, has_value, value = item.partition("=")
        if key not in defaults:
            raise ValueError(f"unknown config arg {key!r}; known: {sorted(defaults)}")
        default = defaults[key]
        if not has_value:
            if not isinstance(default, bool):
                raise ValueError(f"config arg {key!r} needs a value ({key}=...)")
            result[key] = True
        elif isinstance(default, bool):
            result[key] = value.lower() in ("1", "true", "yes")
        else:
            result[key] = type(default)(value)
    return result


def pipeline_config() -> ml_collections.ConfigDict:
    """Defaults shared by every variant (the `tiny` sizes)."""
    config = ml_collections.ConfigDict()
    config.variant = "tiny"
    config.seed = 0

    config.simulator = ml_collections.ConfigDict()
    config.simulator.tasks = PAPER_TASKS
    config.simulator.image_size = 64  # each camera view, square
    config.simulator.wrist_camera = True
    config.simulator.check_steps = 20  # random-action steps per task in the simulator check

    config.data = ml_collections.ConfigDict()
    config.data.tasks = PAPER_TASKS
    config.data.objects = ()  # object names to restrict the scenes to; () = all twenty
    config.data.scenes_per_split = 4  # in-domain and out-of-domain scenes each
    config.data.episodes_per_task_scene = 10
    config.data.suboptimal_ratio = 0.5  # paper: 1:1
    config.data.image_size = 64  # each camera view, square
    config.data.control_freq = 10  # Hz; 100 Hz physics
    config.data.push_distance = 0.10  # metres, push and pull
    config.data.max_attempts = 3
    config.data.split_seed = 0
    config.data.num_workers = 2  # collector processes

    config.tokenizer = tokenizer_config("tiny")

    # The action and the text world model (issue 5) and their held-out evaluation.
    config.world_models = ml_collections.ConfigDict(
        dict(action=world_model_config("tiny", "action"), text=world_model_config("tiny", "text")))
    config.world_model_eval = ml_collections.ConfigDict(dict(
        horizon=8,  # open-loop rollout steps
        starts_per_episode=1,  # rollout clips per held-out episode
        golden_horizon=100,  # cap on the text model's golden trajectory (episodes: 60-110 steps)
        batch_size=16, num_videos=6,
        max_text_episodes=48))  # golden trajectories are long: a fixed subset per split

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.max_to_keep = 3
    config.log_every_steps = 10
    config.progress_every_s = 10.0
    return config
