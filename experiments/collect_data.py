"""Collects RoboScape-ManiSkill episodes, builds the TFDS dataset and writes its card.

  python -m experiments.collect_data --config=experiments/configs/tiny.py --workdir=runs/tiny
  # one shard of many machines' work:
  python -m experiments.collect_data --config=... --workdir=... --shard=3 --num_shards=8

Killed and rerun with the same flags, it resumes: finished episodes are kept and skipped.
"""

import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.launch import parse_flags
from roboscape_jax.utils.provenance import write_run_provenance

_CONFIG = config_flags.DEFINE_config_file("config", None, "Pipeline config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder; data goes to WORKDIR/collect_data.")
_SHARD = flags.DEFINE_integer("shard", 0, "This machine's shard index.", lower_bound=0)
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 1, "Number of shards in all.", lower_bound=1)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # JAX backend probing and Orbax log at INFO
    if _SHARD.value >= _NUM_SHARDS.value:
        raise app.UsageError(f"--shard={_SHARD.value} must be < --num_shards={_NUM_SHARDS.value}")
    import os

    from data_pipeline.pipeline_stage import run_data_stage
    from data_pipeline.rendering import VulkanDriverError

    out_dir = os.path.join(_WORKDIR.value, "collect_data")
    try:
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as err:
            raise OSError(f"cannot write the output folder {out_dir}: {err.strerror}") from err
        write_run_provenance(out_dir, _CONFIG.value)
        result = run_data_stage(
            _CONFIG.value, out_dir, shard=_SHARD.value, num_shards=_NUM_SHARDS.value
        )
    except (ValueError, OSError, VulkanDriverError) as err:  # bad input: one line
        sys.exit(f"collect_data: error: {err}")
    print(json.dumps(result["card"], indent=1)[:3000])
    print(f"dataset: {result['dataset_dir']}\ncard: {out_dir}/card.md")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
