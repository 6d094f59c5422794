"""`base`: one GPU (e.g. one H100); larger images and models than `tiny`.

python -m experiments.main --config=experiments/configs/base.py --workdir=runs/base
"""

from experiments.configs import common


def get_config(arg: str | None = None):
    del arg
    config = common.pipeline_config()
    config.variant = "base"
    config.simulator.image_size = 128
    config.data.image_size = 128
    config.data.scenes_per_split = 8
    config.data.episodes_per_task_scene = 50
    config.log_every_steps = 50
    config.progress_every_s = 30.0
    return config
