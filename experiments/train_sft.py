"""Behaviour cloning of the image policy on the expert dataset (issue 7).

  python -m experiments.train_sft --config=experiments/configs/sft.py --workdir=runs/sft_tiny
  python -m experiments.train_sft --config=experiments/configs/sft.py:frames=tokenized \
      --workdir=runs/sft_tiny_tokenized
  python -m experiments.train_sft --config=experiments/configs/sft.py:debug --workdir=/tmp/sft

The run resumes from `workdir`; it writes `config.json`, `run_info.json`, `metrics.jsonl`
(train loss every `log_every_steps`, `eval/*` held-out metrics), `checkpoints/` (what
`roboscape_jax.policies.sft.restore_params` and the PPO launcher load) and `eval/metrics.json`.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.launch import parse_flags
from experiments.stages.sft import run_sft
from roboscape_jax.utils.provenance import write_run_provenance

_CONFIG = config_flags.DEFINE_config_file("config", None, "SFT config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (resumed when it has checkpoints).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint file at INFO.
    write_run_provenance(_WORKDIR.value, _CONFIG.value)
    run_sft(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
