"""The data stage of the pipeline: collect (resumable), build the TFDS dataset, write the card."""

from __future__ import annotations

import os
import time
from typing import Any

from data_pipeline import scenes as sc
from data_pipeline.collect import CollectConfig, collect


def collect_config(data_config) -> CollectConfig:
    """A CollectConfig from the pipeline config's `data` section (validated there)."""
    fields = {
        f: data_config[f]
        for f in CollectConfig.__dataclass_fields__
        if f in data_config and f != "seed"
    }
    fields["tasks"] = tuple(fields["tasks"])
    fields["objects"] = tuple(fields.get("objects", ()))
    return CollectConfig(**fields)


def run_data_stage(config, out_dir: str, *, shard: int = 0, num_shards: int = 1) -> dict[str, Any]:
    from data_pipeline.dataset import build_dataset, write_dataset_card

    cc = collect_config(config.data)
    cc = CollectConfig(**{**cc.__dict__, "seed": config.seed})
    staging = os.path.join(out_dir, "staging")
    start = time.time()
    run = collect(
        cc,
        staging,
        num_workers=config.data.num_workers,
        shard=shard,
        num_shards=num_shards,
        progress_every_s=config.progress_every_s,
    )
    dataset_dir = build_dataset(staging, os.path.join(out_dir, "tfds"), image_size=cc.image_size)
    card = write_dataset_card(
        staging,
        out_dir,
        split_info=sc.make_split(cc.split_seed).to_dict(),
        episodes_per_hour=run["episodes_per_hour_now"],
    )
    return {
        "dataset_dir": dataset_dir,
        "collect": run,
        "card": card,
        "wall_time_s": time.time() - start,
    }
