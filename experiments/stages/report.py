"""The `report` stage (issue 8): `report.md` from what the earlier stages of the workdir wrote.

Table 1 at this scale (a row per evaluated policy: random, SFT, RL w. World Model; columns: task x
in-domain / out-of-domain success rate with 95% Wilson intervals) from `evaluate/results.json`,
as a table and a bar chart (`table1.png`), the wall time of every stage from its `stage.json`,
the evaluation's frame strips, imagination vs simulator (`experiments.stages.imagination`), and
the world models' held-out figures with the reward curves (Fig. 3) and golden-trajectory goals
(copied into the report folder). Nothing is written in by hand: a figure the workdir does not
hold is reported as missing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from typing import Any

from experiments.stages.evaluate_policies import POLICY_NAMES, success_table
from roboscape_jax.utils.files import atomic_path, write_text
from roboscape_jax.utils.progress import format_duration


def stage_records(root: str, names: Sequence[str]) -> dict[str, dict[str, Any] | None]:
    """{stage: its stage.json record, or None when the stage has not finished in `root`}."""
    records = {}
    for name in names:
        path = os.path.join(root, name, "stage.json")
        if os.path.exists(path):
            with open(path) as f:
                records[name] = json.load(f)
        else:
            records[name] = None
    return records


def wall_time_table(records: dict[str, dict[str, Any] | None]) -> str:
    lines = ["| stage | wall time |", "|---|---|"]
    total = 0.0
    for name, record in records.items():
        if record is None:
            lines.append(f"| {name} | not run |")
            continue
        total += record["wall_time_s"]
        lines.append(f"| {name} | {format_duration(record['wall_time_s'])} |")
    lines.append(f"| total | {format_duration(total)} |")
    return "\n".join(lines)


# figures of the evaluate_world_models stage copied into the report: (source, caption)
WORLD_MODEL_FIGURES = (
    ("rewards/curves_val.png", "Fig. 3 (val): rewards along real successful expert episodes"),
    ("rewards/curves_ood.png", "Fig. 3 (ood): rewards along real successful expert episodes"),
    ("text/goals_val.png", "Golden-trajectory goals of the text model (val)"),
    ("text/goals_ood.png", "Golden-trajectory goals of the text model (ood)"),
)


def world_model_figures(root: str) -> list[tuple[str, str]]:
    """The (source, caption) of WORLD_MODEL_FIGURES that the workdir `root` holds."""
    return [(source, caption) for source, caption in WORLD_MODEL_FIGURES
            if os.path.exists(os.path.join(root, "evaluate_world_models", source))]


def world_model_section(root: str, record: dict[str, Any] | None) -> list[str]:
    """The world models' held-out figures (issue 5) and reward diagnostics (issue 6): the
    evaluate_world_models stage's headline and figures."""
    from experiments.stages.world_model import headline

    parts = ["## World models", ""]
    if record is None:
        return parts + ["The evaluate_world_models stage has not run in this workdir.", ""]
    parts += ["```", headline(record["result"]), "```", ""]
    for source, caption in world_model_figures(root):
        parts += [f"{caption}:", "", f"![{caption}](world_models/{source})", ""]
    return parts


def imagination_section(results: dict[str, dict[str, Any]] | None) -> list[str]:
    parts = ["## Imagination vs simulator", ""]
    if not results:
        return parts + ["No evaluation trace in this workdir (the evaluate stage saves one per "
                        "policy and split).", ""]
    parts += ["The first evaluation episode of each policy and split, its actions replayed open "
              "loop in the world-model env from the same first frame (top: simulator, bottom: "
              "world model). PSNR against the simulator's frames, per step, averaged; next to "
              "repeating the first frame.", "",
              "| episode | task | steps | success | PSNR imagined | PSNR first frame |",
              "|---|---|---|---|---|---|"]
    for name, r in results.items():
        parts.append(f"| {name} | {r['task']} | {r['steps']} | {r['success']} | "
                     f"{r['psnr_imagined']:.2f} dB | {r['psnr_first_frame']:.2f} dB |")
    parts.append("")
    parts += [f"![{name}]({r['strip']})" for name, r in results.items()] + [""]
    return parts


def make_report(config, root: str, stage_names: Sequence[str],
                imagination: dict[str, dict[str, Any]] | None = None) -> str:
    """The report's markdown for the workdir `root` (`imagination`: `run_imagination`'s)."""
    path = os.path.join(root, "evaluate", "results.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"the report needs {path}: run the evaluate stage first")
    with open(path) as f:
        results = json.load(f)
    records = stage_records(root, stage_names)
    e = config.evaluate
    tasks = tuple(e.tasks) or tuple(config.data.tasks)
    parts = [
        f"# RoboScape-R at `{config.variant}` scale",
        "",
        "## Table 1: success rate in ManiSkill",
        "",
        f"{e.episodes_per_task} episodes per task and split (at most {e.max_steps} steps; "
        f"{config.data.scenes_per_split} scenes per split), fixed seeds; in-domain (IND): the "
        "training data's scenes, out-of-domain (OOD): unseen objects and object-container "
        f"pairs. Observations: {e.observation_frames} frames. Cells: success rate "
        "(successes/episodes; 95% Wilson interval).",
        "",
        success_table(results, tasks),
        "",
        "![Table 1 as a chart](table1.png)",
        "",
        "## Wall time per stage",
        "",
        wall_time_table(records),
        "",
    ]
    for stage, title in (("ppo_world_model", "PPO in the world model"),
                         ("ppo_maniskill", "PPO in ManiSkill")):
        if records.get(stage) is None:
            parts += [f"## {title}", "", "Not run in this workdir.", ""]
            continue
        r = records[stage]["result"]
        parts += [f"## {title}", "",
                  f"Initial policy: {r.get('init', '?')}; {int(r['env_steps'])} env steps in "
                  f"{int(r['updates'])} updates in {format_duration(records[stage]['wall_time_s'])}"
                  f"; last update's mean step reward {r.get('reward', float('nan')):.3f}.", ""]
    strips = sorted(os.listdir(os.path.join(root, "evaluate", "strips"))) if os.path.isdir(
        os.path.join(root, "evaluate", "strips")) else []
    if strips:
        parts += ["## First evaluation episode of each policy and split (third view over wrist)",
                  ""]
        parts += [f"![{s}](strips/{s})" for s in strips] + [""]
    parts += imagination_section(imagination)
    parts += world_model_section(root, records.get("evaluate_world_models"))
    parts += ["Not in this report yet (issue 8): Fig. 2 (success against training wall time per "
              "reward module), Table 2 (multi-task), the controllability grid.", ""]
    return "\n".join(parts)


def plot_success(results: dict[str, Any], tasks: Sequence[str], path: str) -> None:
    """Bar chart of success rates with Wilson intervals: a group per task (and "all"), a bar per
    policy and split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = (*tasks, "all")
    bars = [(p, s) for p in results for s in ("ind", "ood")]
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(1.6 * len(groups) + 2, 3.2))
    for i, (policy, split) in enumerate(bars):
        cells = [results[policy].get(split, {}).get(g) for g in groups]
        rate = [c["success_rate"] if c else 0.0 for c in cells]
        err = [[r - c["ci_low"] if c else 0 for r, c in zip(rate, cells, strict=True)],
               [c["ci_high"] - r if c else 0 for r, c in zip(rate, cells, strict=True)]]
        x = [g + (i - (len(bars) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(x, rate, width, yerr=err, capsize=2,
               label=f"{POLICY_NAMES.get(policy, policy)} {split.upper()}")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def run_report(config, out_dir: str, stage_names: Sequence[str]) -> dict[str, Any]:
    """Writes `out_dir/report.md` atomically; returns its path and Table 1's overall rates."""
    from experiments.stages.imagination import run_imagination

    root = os.path.dirname(os.path.abspath(out_dir))
    imagination = run_imagination(config, root, out_dir)
    text = make_report(config, root, stage_names, imagination)
    strips = os.path.join(root, "evaluate", "strips")
    if os.path.isdir(strips):
        shutil.copytree(strips, os.path.join(out_dir, "strips"), dirs_exist_ok=True)
    for source, _ in world_model_figures(root):
        target = os.path.join(out_dir, "world_models", source)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(os.path.join(root, "evaluate_world_models", source), target)
    path = os.path.join(out_dir, "report.md")
    write_text(path, text)
    with open(os.path.join(root, "evaluate", "results.json")) as f:
        results = json.load(f)
    headline = {POLICY_NAMES.get(p, p): {s: v[s]["all"]["success_rate"] for s in v}
                for p, v in results.items()}
    tasks = tuple(config.evaluate.tasks) or tuple(config.data.tasks)
    plot_success(results, tasks, os.path.join(out_dir, "table1.png"))
    print(f"report: {path}\n" + success_table(results, tasks), flush=True)
    return {"report": path, "success_rate_all": headline, "imagination": imagination}
