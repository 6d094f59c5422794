"""Runs the pipeline's stages in order; each is skipped when its output for the same config exists.

A stage writes into `workdir/<name>/`; when it returns, `stage.json` records a hash of the config
sections it reads (and of what it reads from earlier stages' outputs instead of the config,
`derived_inputs`), its result and its wall time. A rerun with the same config skips it; a changed
config reruns it (and a stage interrupted midway reruns, resuming from its own checkpoints).
A stage that resumes from training checkpoints (`restart_on_change`) must not pick up a run of
another config: when its finished output has another hash, the folder is moved aside to
`<name>.replaced-<old hash>` (kept, not deleted) and the stage starts afresh.
A stage whose config turns it off returns `{"skipped": ...}` and is reported as skipped.
Stages that are not built yet are reported as missing, with the issue that tracks them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from typing import Any, Callable

import ml_collections

from roboscape_jax.utils.files import write_json

StageFn = Callable[[ml_collections.ConfigDict, str], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    run: StageFn | None  # None: not built yet
    config_keys: tuple[str, ...] = ()  # config sections whose values key the cache
    issue: int | None = None  # where a missing stage is tracked
    # a finished run of another config is moved aside rather than resumed (training stages)
    restart_on_change: bool = False
    # (config, workdir) -> values this stage reads from earlier stages' outputs rather than from
    # the config (e.g. a decode setting another stage chose); they key the cache too
    derived_inputs: Callable[[ml_collections.ConfigDict, str], dict[str, Any]] | None = None


# Options added after runs were cached, each with the value that keeps the behaviour from before
# it existed. While a field holds that value it is left out of the hash, so adding an option does
# not rerun every cached stage of an existing workdir; any other value changes the hash.
INERT_DEFAULTS: dict[str, Any] = {
    "data.ind_scenes_per_split": None,
    "tokenizer.input.colour_permute_fraction": 0.0,
    "ppo_world_model.ppo.values_after_rollout": False,
    "ppo_world_model.ppo.final_values_in_rollout": False,
    "ppo_maniskill.ppo.final_values_in_rollout": False,  # a copy of ppo_world_model.ppo
    "tokenizer.loss.adversarial_weight": 0.0,
    "tokenizer.loss.adversarial_adaptive": True,
    "tokenizer.loss.adversarial_start_step": 0,
    "tokenizer.discriminator.channels": 32,  # the section goes once all its fields have
    "tokenizer.discriminator.num_layers": 3,
    "tokenizer.discriminator.lr": 1e-4,
    "tokenizer.discriminator.b1": 0.5,
    "tokenizer.discriminator.b2": 0.9,
    "tokenizer.loss.temporal_weight": 0.0,
    "tokenizer.loss.temporal_margin": 0.25,
    "tokenizer.cache.generated_margins": False,
    "tokenizer.model.stem_factor": 1,
    "world_models.action.model.generated_margin_flag": False,
    "world_models.text.model.generated_margin_flag": False,
    "world_models.action.model.latent_head": False,
    "world_models.text.model.latent_head": False,
    "world_models.action.loss.latent_weight": 100.0,
    "world_models.text.loss.latent_weight": 100.0,
    "text_ensemble.members": 1,
    "world_model_eval.rollout_margins": "decoded",
}


def _drop_inert(payload: dict[str, Any], inert: dict[str, Any]) -> None:
    """Removes, in place, each dotted path of ``inert`` whose value in ``payload`` equals it,
    and then each section that this leaves empty (a new section of inert options)."""
    for path, value in inert.items():
        *parents, leaf = path.split(".")
        chain, node = [payload], payload
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
            chain.append(node)
        if isinstance(node, dict) and leaf in node and node[leaf] == value:
            del node[leaf]
            for parent, name in zip(reversed(chain[:-1]), reversed(parents), strict=True):
                if parent[name]:
                    break
                del parent[name]


def stage_identity(workdir: str, name: str) -> list:
    """What tells one finished run of stage `name` in `workdir` from another: its record's config
    hash and wall time (or its checkpoint names while it has no record; [] if it never ran)."""
    marker = os.path.join(workdir, name, "stage.json")
    if os.path.exists(marker):
        with open(marker) as f:
            record = json.load(f)
        return [record.get("config_hash"), record.get("wall_time_s")]
    checkpoints = os.path.join(workdir, name, "checkpoints")
    return sorted(os.listdir(checkpoints)) if os.path.isdir(checkpoints) else []


def config_hash(config: ml_collections.ConfigDict, keys: tuple[str, ...],
                inert: dict[str, Any] | None = None,
                derived: dict[str, Any] | None = None) -> str:
    """Hash of the config sections ``keys`` (and the seed), blind to inert new options, and of
    the ``derived`` inputs read from other stages' outputs (none: the config's hash alone)."""
    payload = {
        key: config[key].to_dict() if hasattr(config[key], "to_dict") else config[key]
        for key in ("seed", *keys)
    }
    _drop_inert(payload, INERT_DEFAULTS if inert is None else inert)
    if derived:
        payload["derived_inputs"] = derived
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def run_stage(stage: Stage, config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Runs (or skips) one stage; returns its record: status, wall time and result."""
    if stage.run is None:
        return {"status": "missing", "issue": stage.issue}
    out_dir = os.path.join(workdir, stage.name)
    marker = os.path.join(out_dir, "stage.json")
    derived = stage.derived_inputs(config, workdir) if stage.derived_inputs else None
    digest = config_hash(config, stage.config_keys, derived=derived)
    if os.path.exists(marker):
        with open(marker) as f:
            record = json.load(f)
        if record.get("config_hash") == digest:
            return {**record, "status": "cached"}
        if stage.restart_on_change:
            aside = f"{out_dir}.replaced-{record.get('config_hash')}"
            if os.path.exists(aside):
                shutil.rmtree(aside)  # an older run of that same config, already superseded
            os.rename(out_dir, aside)
            print(f"{stage.name}: its config changed; the previous run is kept in {aside}",
                  flush=True)
    os.makedirs(out_dir, exist_ok=True)
    start = time.time()
    result = stage.run(config, out_dir)
    record = {
        "status": "done",
        "config_hash": digest,
        **({"derived_inputs": derived} if derived else {}),
        "wall_time_s": time.time() - start,
        "result": result,
    }
    write_json(marker, record, sort_keys=False, default=str)
    return record


def run_pipeline(
    stages: list[Stage], config: ml_collections.ConfigDict, workdir: str
) -> dict[str, dict[str, Any]]:
    """Runs every stage in order, printing a line per stage and a summary table at the end.
    The workdir's `pipeline_summary.json` keeps the records of stages not in `stages` (a run of
    `--only` updates the stages it ran)."""
    summary_path = os.path.join(workdir, "pipeline_summary.json")
    records = {}
    for stage in stages:
        print(f"== stage {stage.name}", flush=True)
        records[stage.name] = record = run_stage(stage, config, workdir)
        print(f"== stage {stage.name}: {describe(record)}", flush=True)
    write_json(summary_path, {**_previous_summary(summary_path), **records}, sort_keys=False,
               default=str)
    print(summary_table(records), flush=True)
    return records


def _previous_summary(path: str) -> dict[str, Any]:
    """The stage records of an earlier `pipeline_summary.json` ({} if none or unreadable)."""
    try:
        with open(path) as f:
            previous = json.load(f)
    except (OSError, ValueError):
        return {}
    return previous if isinstance(previous, dict) else {}


SKIPPED = "skipped (off in this config)"  # how a stage its config turns off is listed


def skipped_by_config(record: dict[str, Any]) -> bool:
    """Whether a stage's record says its config turned it off."""
    return bool((record.get("result") or {}).get("skipped"))


def describe(record: dict[str, Any]) -> str:
    if record["status"] == "missing":
        return f"MISSING (not built yet: issue {record['issue']})"
    if skipped_by_config(record):
        return SKIPPED
    return f"{record['status']} ({record['wall_time_s']:.1f}s)"


def summary_table(records: dict[str, dict[str, Any]]) -> str:
    lines = ["| stage | status | wall time |", "|---|---|---|"]
    for name, record in records.items():
        if skipped_by_config(record):
            lines.append(f"| {name} | {SKIPPED} | - |")
            continue
        wall = f"{record['wall_time_s']:.1f}s" if "wall_time_s" in record else "-"
        status = record["status"] + (f" (issue {record['issue']})" if record.get("issue") else "")
        lines.append(f"| {name} | {status} | {wall} |")
    return "\n".join(lines)
