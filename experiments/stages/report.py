"""The `report` stage (issue 8): `report.md` from what the earlier stages of the workdir wrote.

Table 1 at this scale (a row per evaluated policy: random, SFT, RL w. World Model; columns: task x
in-domain / out-of-domain success rate with 95% Wilson intervals) from `evaluate/results.json`,
as a table and a bar chart (`table1.png`), the wall time of every stage from its `stage.json`,
the evaluation's frame strips, imagination vs simulator (`experiments.stages.imagination`), and
the world models' held-out figures with the reward curves (Fig. 3), the controllability grids
(supplement Fig. 9) and golden-trajectory goals, and the trainers' curves (copied into the
report folder); Table 2 (the
multi-task policies on P.&P. and M.A.) and Fig. 2 (success against training wall time for each
reward module whose PPO stage ran and was evaluated, `fig2.png`). Nothing is written in by
hand: a figure the workdir does not hold is reported as missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from typing import Any

from experiments.pipeline import SKIPPED, skipped_by_config
from experiments.stages.evaluate_policies import (
    POLICY_NAMES,
    POLICY_STAGES,
    SPLIT_NAMES,
    success_table,
)
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
        if skipped_by_config(record):
            lines.append(f"| {name} | {SKIPPED} |")
            continue
        total += record["wall_time_s"]
        lines.append(f"| {name} | {format_duration(record['wall_time_s'])} |")
    lines.append(f"| total | {format_duration(total)} |")
    return "\n".join(lines)


# figures of the evaluate_world_models stage copied into the report: (source, caption)
WORLD_MODEL_FIGURES = (
    ("rewards/curves_val.png", "Fig. 3 (val): rewards along real successful expert episodes"),
    ("rewards/curves_ood.png", "Fig. 3 (ood): rewards along real successful expert episodes"),
    ("action/controllability_val.png", "Controllability (supplement Fig. 9, val): one start "
     "under the real, negated and zero motion, a constant move along each axis and 10x-range "
     "random actions; columns: the last context frame, then the generated frames"),
    ("action/controllability_ood.png", "Controllability (supplement Fig. 9, ood)"),
    ("text/goals_val.png", "Golden-trajectory goals of the text model (val)"),
    ("text/goals_ood.png", "Golden-trajectory goals of the text model (ood)"),
)


TABLE2_TASKS = ("pick_and_place", "move_to_target")  # the paper's P.&P. and M.A.


def _has_run(record: dict[str, Any] | None) -> bool:
    """Whether a stage's record is a finished run (not absent, not skipped by its config)."""
    return record is not None and not skipped_by_config(record)


def _rate(cell: dict[str, Any]) -> str:
    return f"{100 * cell['success_rate']:.0f}% ({cell['successes']}/{cell['episodes']})"


def table2(results: dict[str, Any], tasks: Sequence[str] = TABLE2_TASKS) -> str:
    """Markdown Table 2 (multi-task): a row per trained policy, per task and split its success
    rate and the change from SFT in points; a task the evaluation did not run is "-"."""
    columns = [(task, split) for task in tasks for split in ("ind", "ood")]
    lines = ["| policy | " + " | ".join(f"{t} {SPLIT_NAMES[s]}" for t, s in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    sft = results.get("sft", {})
    for policy in POLICY_STAGES:
        if policy not in results:
            continue
        cells = []
        for task, split in columns:
            cell = results[policy].get(split, {}).get(task)
            base = sft.get(split, {}).get(task)
            if cell is None:
                cells.append("-")
                continue
            text = _rate(cell)
            if policy != "sft" and base is not None:
                text += f", {100 * (cell['success_rate'] - base['success_rate']):+.0f} pts"
            cells.append(text)
        lines.append(f"| {POLICY_NAMES[policy]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# Fig. 2's reward modules: (name, the policy's stage, what its training wall time is read from)
REWARD_MODULES = (("rule-based (ManiSkill)", "ppo_maniskill"),
                  ("world model (ours)", "ppo_world_model"),
                  ("embedding-based", "ppo_embedding_reward"),
                  ("proxy-based", "ppo_proxy_reward"))


def training_seconds(record: dict[str, Any]) -> float:
    """A PPO stage's training wall time: ManiSkill's own count of its training (`train_wall_s`,
    kept across resumes), else the stage's wall time."""
    return float(record["result"].get("train_wall_s", record["wall_time_s"]))


def fig2_points(results: dict[str, Any], records: dict[str, dict[str, Any] | None]
                ) -> dict[str, list[tuple[float, dict[str, Any]]]]:
    """{reward module: [(training seconds, {split: its "all" cell})]} for each module whose PPO
    stage ran and was evaluated: SFT at 0 s (every module's initial policy), then the trained
    policy."""
    start = results.get("sft")
    points = {}
    for module, stage in REWARD_MODULES:
        record = records.get(stage)
        if stage not in results or not _has_run(record):
            continue
        curve = [(0.0, {s: start[s]["all"] for s in start})] if start else []
        curve.append((training_seconds(record),
                      {s: results[stage][s]["all"] for s in results[stage]}))
        points[module] = curve
    return points


def fig2_table(points: dict[str, list[tuple[float, dict[str, Any]]]]) -> str:
    lines = ["| reward module | training wall time | success IND | success OOD |",
             "|---|---|---|---|"]
    for module, curve in points.items():
        t, cells = curve[-1]
        lines.append(f"| {module} | {format_duration(t)} | " + " | ".join(
            _rate(cells[s]) if s in cells else "-" for s in ("ind", "ood")) + " |")
    return "\n".join(lines)


def plot_fig2(points: dict[str, list[tuple[float, dict[str, Any]]]], path: str) -> None:
    """Success rate (all tasks, 95% Wilson bars) against training wall time, a line per reward
    module, IND and OOD side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True)
    for ax, split in zip(axes, ("ind", "ood"), strict=True):
        for module, curve in points.items():
            rows = [(t / 60.0, c[split]) for t, c in curve if split in c]
            if not rows:
                continue
            x = [t for t, _ in rows]
            y = [c["success_rate"] for _, c in rows]
            err = [[v - c["ci_low"] for v, (_, c) in zip(y, rows, strict=True)],
                   [c["ci_high"] - v for v, (_, c) in zip(y, rows, strict=True)]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=module)
        ax.set_title(SPLIT_NAMES[split])
        ax.set_xlabel("training wall time (min)")
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("success rate (all tasks)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def fig2_section(results: dict[str, Any], records: dict[str, dict[str, Any] | None]
                 ) -> list[str]:
    points = fig2_points(results, records)
    parts = ["## Fig. 2: success against training wall time, per reward module", ""]
    if not points:
        return parts + ["No PPO policy has been evaluated in this workdir.", ""]
    missing = [m for m, _ in REWARD_MODULES if m not in points]
    parts += ["Each module's PPO starts from the SFT policy (0 min) and is evaluated once, at the "
              "end of its training (Table 1's episodes, all tasks). The world-model modules' "
              "time is their stage's wall time; ManiSkill's, its training time.", "",
              fig2_table(points), "", "![Fig. 2](fig2.png)", ""]
    if missing:
        parts += [f"Not run in this workdir: {', '.join(missing)} (`reward_baselines.rewards` "
                  "and `evaluate.policies` turn them on; `common.with_reward_baselines`).", ""]
    return parts


def world_model_figures(root: str) -> list[tuple[str, str]]:
    """The (source, caption) of WORLD_MODEL_FIGURES that the workdir `root` holds."""
    return [(source, caption) for source, caption in WORLD_MODEL_FIGURES
            if os.path.exists(os.path.join(root, "evaluate_world_models", source))]


# training curves the trainers write (utils.curves): (source in the workdir, name in the report)
TRAINING_CURVES = (
    ("train_tokenizer/curves.png", "tokenizer"),
    ("train_world_models/action/curves.png", "action world model"),
    ("train_world_models/text/curves.png", "text world model"),
)


def training_curves(root: str) -> list[tuple[str, str]]:
    """The (source, name) of TRAINING_CURVES, then of each text-ensemble member's curves
    (train_text_ensemble/member<k>), that the workdir `root` holds."""
    members = os.path.join(root, "train_text_ensemble")
    numbers = sorted(int(name[len("member"):]) for name in
                     (os.listdir(members) if os.path.isdir(members) else ())
                     if re.fullmatch(r"member\d+", name))
    candidates = [*TRAINING_CURVES, *[(f"train_text_ensemble/member{k}/curves.png",
                                       f"text world model, ensemble member {k}")
                                      for k in numbers]]
    return [(source, name) for source, name in candidates
            if os.path.exists(os.path.join(root, source))]


def training_curves_section(root: str) -> list[str]:
    parts = ["## Training curves", ""]
    curves = training_curves(root)
    if not curves:
        return parts + ["No trainer in this workdir wrote its curves.", ""]
    for source, name in curves:
        parts += [f"{name} (training rows, held-out evaluations over them):", "",
                  f"![{name}](curves/{source.replace('/', '_')})", ""]
    return parts


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
        f"{config.data.get('ind_scenes_per_split') or config.data.scenes_per_split} in-domain "
        f"and {config.data.scenes_per_split} out-of-domain scenes), fixed seeds; in-domain "
        "(IND): the "
        "training data's scenes, out-of-domain (OOD): unseen objects and object-container "
        f"pairs. Observations: {e.observation_frames} frames. Cells: success rate "
        "(successes/episodes; 95% Wilson interval).",
        "",
        success_table(results, tasks),
        "",
        "![Table 1 as a chart](table1.png)",
        "",
        "## Table 2: multi-task",
        "",
        "The paper's Table 2 fine-tunes one policy on P.&P. and M.A. together and asks whether "
        "RL keeps both tasks' gains balanced. Every policy here is already one multi-task "
        f"policy over all {len(tasks)} tasks (one SFT, one PPO run per regime), so Table 2 "
        "asks that question of the Table 1 policies: their success on the two tasks and the "
        "change from SFT in percentage points. (A policy trained on only these two tasks is "
        "not a stage of this pipeline.)",
        "",
        table2(results),
        "",
        *fig2_section(results, records),
        "## Wall time per stage",
        "",
        wall_time_table(records),
        "",
    ]
    for stage, title in (("ppo_world_model", "PPO in the world model"),
                         ("ppo_maniskill", "PPO in ManiSkill"),
                         ("ppo_embedding_reward", "PPO in the world model, embedding reward"),
                         ("ppo_proxy_reward", "PPO in the world model, proxy reward")):
        if not _has_run(records.get(stage)):
            if stage in ("ppo_world_model", "ppo_maniskill"):
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
    parts += training_curves_section(root)
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
    for source, _ in training_curves(root):
        os.makedirs(os.path.join(out_dir, "curves"), exist_ok=True)
        shutil.copy(os.path.join(root, source),
                    os.path.join(out_dir, "curves", source.replace("/", "_")))
    path = os.path.join(out_dir, "report.md")
    write_text(path, text)
    with open(os.path.join(root, "evaluate", "results.json")) as f:
        results = json.load(f)
    headline = {POLICY_NAMES.get(p, p): {s: v[s]["all"]["success_rate"] for s in v}
                for p, v in results.items()}
    tasks = tuple(config.evaluate.tasks) or tuple(config.data.tasks)
    plot_success(results, tasks, os.path.join(out_dir, "table1.png"))
    points = fig2_points(results, stage_records(root, stage_names))
    if points:
        plot_fig2(points, os.path.join(out_dir, "fig2.png"))
    print(f"report: {path}\n" + success_table(results, tasks), flush=True)
    return {"report": path, "success_rate_all": headline, "imagination": imagination}
