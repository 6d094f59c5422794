"""Trains an action or text world model (issue 5) and writes its held-out evaluation.

  python -m experiments.train_world_model --config=experiments/configs/world_model_run.py \
      --workdir=runs/world_model_action_tiny
  python -m experiments.train_world_model \
      --config=experiments/configs/world_model_run.py:control=text --workdir=runs/wm_text_tiny

Any config with a `world_model` section and a `token_cache` works. The run resumes from `workdir`;
it writes `config.json`, `run_info.json`, `metrics.jsonl`, `checkpoints/`, TensorBoard files and
`eval/metrics.json` there. On a CPU host it trains data-parallel over one XLA device per core
(`--cpu_devices`).
"""

import os

from experiments.cpu_devices import cpu_devices_from_argv

DEFAULT_CPU_DEVICES = os.cpu_count() or 1
cpu_devices_from_argv(DEFAULT_CPU_DEVICES)  # before any import starts JAX's backend

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from experiments.launch import (  # noqa: E402
    define_cpu_devices_flag,
    initialize_distributed,
    parse_flags,
)
from roboscape_jax.utils import sharding  # noqa: E402
from roboscape_jax.utils.provenance import write_run_provenance  # noqa: E402
from roboscape_jax.world_model import data  # noqa: E402
from roboscape_jax.world_model.train import train_and_evaluate  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config with a world_model section.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (resumed when it has checkpoints).")
_CPU_DEVICES = define_cpu_devices_flag(DEFAULT_CPU_DEVICES)
flags.mark_flags_as_required(["config", "workdir"])


def load_episodes(config) -> dict[str, list[data.Episode]]:
    """Train/held-out episodes of `config.token_cache`, or synthetic toy episodes when absent."""
    wm = config.world_model
    if config.token_cache and os.path.isdir(config.token_cache):
        episodes = data.load_token_cache(config.token_cache)
    else:
        logging.warning("no token cache at %r: training on %d synthetic episodes (development "
                        "only)", config.token_cache, config.num_synthetic_episodes)
        episodes = data.synthetic_episodes(
            config.num_synthetic_episodes, grid=(wm.model.grid_height, wm.model.grid_width),
            num_bits=wm.model.num_bits, text_dim=wm.model.text_dim, seed=config.seed)
    train, held_out = data.split_held_out(episodes, wm.input.held_out_fraction)
    return {"train": train, "held_out": held_out}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint file at INFO.
    initialize_distributed()
    config, workdir = _CONFIG.value, _WORKDIR.value
    if "world_model" not in config:
        raise app.UsageError("the config has no world_model section; use "
                             "experiments/configs/world_model_run.py")
    if sharding.is_primary():  # one writer per run folder (multi-host)
        write_run_provenance(workdir, config)
    train_and_evaluate(config.world_model, workdir, load_episodes(config),
                       parallel=config.get("parallel"))
    print(f"held-out evaluation: {os.path.join(workdir, 'eval', 'metrics.json')}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
