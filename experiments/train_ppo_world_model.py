"""PPO of the image policy inside the action world model (issue 7).

  python -m experiments.train_ppo_world_model --config=experiments/configs/ppo_world_model.py \
      --workdir=runs/ppo_wm_tiny
  python -m experiments.train_ppo_world_model \
      --config=experiments/configs/ppo_world_model.py:debug --workdir=/tmp/ppo_wm

Every update (rollout of num_envs x num_steps world-model steps, GAE, epochs x minibatches) runs
inside one `lax.scan`; `updates_per_checkpoint` updates form one compiled chunk. The run resumes
from `workdir`; it writes `config.json`, `run_info.json`, `scenes.npz`, `metrics.jsonl` (one row
per update: `episode_return`, the mean return of the episodes that ended in it, `reward`, the
mean step reward, and the PPO losses), `checkpoints/` (the whole runner state; the policy params
are `train_state.params`) and `summary.json` (env steps/s after compilation, last update).
"""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.launch import parse_flags
from experiments.stages.ppo_world_model import run_ppo_world_model
from roboscape_jax.utils.provenance import write_run_provenance

_CONFIG = config_flags.DEFINE_config_file("config", None, "PPO config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (resumed when it has checkpoints).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint file at INFO.
    write_run_provenance(_WORKDIR.value, _CONFIG.value)
    run_ppo_world_model(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
