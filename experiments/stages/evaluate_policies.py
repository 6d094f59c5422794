"""The `evaluate` stage (issue 8): success rates in ManiSkill of the pipeline's policies.

  results = run_evaluate_policies(config, out_dir)   # out_dir: <workdir>/evaluate

Each policy of `config.evaluate.policies` ("random", "sft", "ppo_world_model": the latter two
restored from the same workdir's stage folders) runs `episodes_per_task` fixed-seed episodes per
task in in-domain and out-of-domain scenes (`data_pipeline.policy_eval`). Trained policies see each
rendered frame through the tokenizer (encode -> decode), as in the world-model env and SFT
(`roboscape_jax.env.observation.ObservationAdapter`). Every episode's record is written as it
finishes (`episodes/<policy>/<key>.json`, with a digest of the policy's run: `run_ids`), so an
interrupted stage resumes where it stopped and a retrained policy is evaluated again; then
`results.json`: per policy, split ("ind", "ood") and task (and "all"), successes, episodes,
success rate and its 95% Wilson interval, mean steps. `strips/` (PNG) and `videos/` (GIF) show
the first episode of each policy and split.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments.pipeline import stage_identity
from roboscape_jax.utils.files import atomic_path, write_json
from roboscape_jax.utils.stats import wilson_interval

# trained policies: each one's stage folder
POLICY_STAGES = ("sft", "ppo_world_model", "ppo_maniskill", "ppo_embedding_reward",
                 "ppo_proxy_reward")
POLICY_NAMES = {"random": "random", "sft": "SFT", "ppo_world_model": "RL w. World Model",
                "ppo_maniskill": "RL w. ManiSkill",
                "ppo_embedding_reward": "RL w. WM, embedding reward",
                "ppo_proxy_reward": "RL w. WM, proxy reward"}
SPLIT_NAMES = {"ind": "IND", "ood": "OOD"}


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """{split: {task | "all": {successes, episodes, success_rate, ci_low, ci_high, mean_steps}}}
    of episode records (each with split, task, success, steps)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["split"], r["task"]), []).append(r)
        groups.setdefault((r["split"], "all"), []).append(r)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (split, task), rows in sorted(groups.items()):
        wins = sum(bool(r["success"]) for r in rows)
        low, high = wilson_interval(wins, len(rows))
        out.setdefault(split, {})[task] = {
            "successes": wins, "episodes": len(rows), "success_rate": wins / len(rows),
            "ci_low": low, "ci_high": high,
            "mean_steps": float(np.mean([r["steps"] for r in rows]))}
    return out


def success_table(results: dict[str, Any], tasks: Sequence[str]) -> str:
    """Markdown Table 1: a row per policy, a column per task and split (plus "all"): success
    rate in percent, successes/episodes and the 95% Wilson interval."""
    columns = [(task, split) for task in (*tasks, "all") for split in ("ind", "ood")]
    header = "| policy | " + " | ".join(f"{t} {SPLIT_NAMES[s]}" for t, s in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for policy, splits in results.items():
        cells = []
        for task, split in columns:
            cell = splits.get(split, {}).get(task)
            cells.append("-" if cell is None else
                         f"{100 * cell['success_rate']:.0f}% ({cell['successes']}/"
                         f"{cell['episodes']}; {100 * cell['ci_low']:.0f}-"
                         f"{100 * cell['ci_high']:.0f})")
        lines.append(f"| {POLICY_NAMES.get(policy, policy)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_adapter(config, root: str, frames: str):
    """(ObservationAdapter, tokenizer params, frame shape) for `frames` ("raw" or "tokenized":
    the tokenizer of the workdir `root`, FileNotFoundError naming a missing checkpoint), with the
    gripper proxy of `config.sft.observation` (the env's and SFT's)."""
    from roboscape_jax.env.observation import ObservationAdapter

    if frames not in ("raw", "tokenized"):
        raise ValueError(f"observation frames must be 'raw' or 'tokenized', got {frames!r}")
    tok, tok_params = None, None
    if frames == "tokenized":
        from roboscape_jax.tokenizer import train as tok_train

        tok_dir = os.path.join(root, "train_tokenizer")
        if not os.path.isdir(os.path.join(tok_dir, "checkpoints")):
            raise FileNotFoundError(f"tokenized observations need the tokenizer checkpoint in "
                                    f"{tok_dir}/checkpoints: run the train_tokenizer stage")
        tok, tok_params = tok_train.restore_params(tok_dir, config.tokenizer)
    c = config.sft.observation
    adapter = ObservationAdapter(tok, gripper_rate=c.gripper_rate,
                                 initial_gripper=c.initial_gripper)
    frame_shape = (config.tokenizer.input.frame_height, config.tokenizer.input.frame_width, 3)
    return adapter, tok_params, frame_shape


def load_controllers(config, root: str) -> dict[str, Any]:
    """{policy name: controller} for `config.evaluate.policies`; trained ones restored from the
    workdir `root` (FileNotFoundError naming a missing checkpoint, before any episode runs)."""
    from roboscape_jax.policies import closed_loop, loading

    e, names = config.evaluate, tuple(config.evaluate.policies)
    unknown = sorted(set(names) - {"random", *POLICY_STAGES})
    if unknown:
        raise ValueError(f"unknown policies {unknown}; known: random, {', '.join(POLICY_STAGES)}")
    trained = [n for n in names if n in POLICY_STAGES]
    if trained and e.observation_frames != config.sft.observation_frames:
        raise ValueError(f"evaluate.observation_frames={e.observation_frames!r} but the policies "
                         f"start from SFT on {config.sft.observation_frames!r} frames: they "
                         "would see another kind of image")
    controllers: dict[str, Any] = {}
    if not trained:
        return {n: closed_loop.RandomPolicy(config.sft.model.action_dim) for n in names}
    adapter, tok_params, frame_shape = load_adapter(config, root, e.observation_frames)
    for name in names:
        if name == "random":
            controllers[name] = closed_loop.RandomPolicy(config.sft.model.action_dim)
            continue
        policy, params = loading.restore_policy(os.path.join(root, name), config.sft.model,
                                                frame_shape=frame_shape)
        act = loading.make_act_fn(policy, deterministic=e.deterministic)
        controllers[name] = closed_loop.AdaptedPolicy(adapter, tok_params, act, params)
    return controllers


def save_episode_images(out_dir: str, name: str, frames: np.ndarray, num_strip: int) -> None:
    """`strips/<name>.png` (`num_strip` evenly spaced frames side by side) and
    `videos/<name>.gif` (every frame, 10 fps), each written atomically."""
    from PIL import Image

    pick = np.unique(np.linspace(0, len(frames) - 1, num_strip).round().astype(int))
    images = {os.path.join(out_dir, "strips", f"{name}.png"):
              lambda p: Image.fromarray(np.concatenate(list(frames[pick]), axis=1)).save(p),
              os.path.join(out_dir, "videos", f"{name}.gif"):
              lambda p: Image.fromarray(frames[0]).save(
                  p, format="GIF", save_all=True, duration=100, loop=0,
                  append_images=[Image.fromarray(f) for f in frames[1:]])}
    for path, save in images.items():
        with atomic_path(path) as tmp:
            save(tmp)


def _is_first(spec, tasks: Sequence[str]) -> bool:
    """The episode of a policy and split whose frames are kept (strip, GIF, trace)."""
    return spec.index == 0 and spec.task == tasks[0]


def _trace_path(out_dir: str, name: str, spec) -> str:
    return os.path.join(out_dir, "traces", f"{name}_{spec.split}.npz")


def save_trace(path: str, trace, instruction: np.ndarray, record: dict[str, Any]) -> None:
    """The episode's frames, actions and instruction embedding as npz (the report drives the
    world model with the same actions: imagination vs simulator), written atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, frames=trace.frames, actions=trace.actions,
                     instruction=np.asarray(instruction, np.float32),
                     task=record["task"], key=record["key"], success=record["success"])


def _read(path: str) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def run_ids(config, root: str, names: Sequence[str]) -> dict[str, str]:
    """{policy: digest of what its episodes depend on}: the evaluation settings, the scenes, and
    for a trained policy the tokenizer's and its own stage run. A stored episode with another
    digest (e.g. the policy was retrained) is run again."""
    e = config.evaluate
    settings = {k: e[k] for k in ("max_steps", "observation_frames", "deterministic", "seed")}
    ids = {}
    for name in names:
        payload = {"policy": name, "evaluate": settings, "data": config.data.to_dict(),
                   "seed": config.seed}
        if name != "random":
            payload["runs"] = [stage_identity(root, "train_tokenizer"),
                               stage_identity(root, name)]
        blob = json.dumps(payload, sort_keys=True, default=str).encode()
        ids[name] = hashlib.sha256(blob).hexdigest()[:16]
    return ids


def derived_inputs(config, workdir: str) -> dict[str, Any]:
    """The runs of the policies this stage evaluates (`run_ids`): a retrained policy reruns the
    stage (pipeline.Stage), which then runs only that policy's episodes again."""
    return {"policy_runs": run_ids(config, workdir, list(config.evaluate.policies))}


def _episode_path(out_dir: str, name: str, key: str) -> str:
    return os.path.join(out_dir, "episodes", name, key + ".json")


def _is_done(path: str, run_id: str) -> bool:
    return os.path.exists(path) and _read(path).get("run_id") == run_id


def run_evaluate_policies(config, out_dir: str) -> dict[str, Any]:
    """Runs (or resumes) every policy's episodes; writes and returns `results.json`."""
    from data_pipeline import policy_eval  # needs ManiSkill
    from roboscape_jax.utils.progress import Progress

    root, e = os.path.dirname(os.path.abspath(out_dir)), config.evaluate
    frame_height = config.tokenizer.input.frame_height
    if 2 * config.data.image_size != frame_height:
        raise ValueError(f"two {config.data.image_size}px views make a {2 * config.data.image_size}"
                         f"-row frame, the tokenizer reads {frame_height} rows")
    controllers = load_controllers(config, root)
    tasks = tuple(e.tasks) or tuple(config.data.tasks)
    specs = policy_eval.eval_schedule(
        tasks, policy_eval.eval_scenes(config.data, seed=config.seed),
        episodes_per_task=e.episodes_per_task, seed=e.seed)
    texts = sorted({s.instruction for s in specs})
    embedding = dict(zip(texts, policy_eval.embed(texts), strict=True))
    ids = run_ids(config, root, list(controllers))
    # an episode is done when its record has this run id; a first episode also needs its trace
    todo = {name: [s for s in specs if not _is_done(_episode_path(out_dir, name, s.key), ids[name])
                   or (_is_first(s, tasks) and not os.path.exists(_trace_path(out_dir, name, s)))]
            for name in controllers}
    print(f"evaluate: {len(controllers)} policies x {len(specs)} episodes "
          f"({sum(map(len, todo.values()))} to run), at most {e.max_steps} steps each", flush=True)
    env, scene = (policy_eval.make_eval_env(image_size=config.data.image_size,
                                            control_freq=config.data.control_freq)
                  if any(todo.values()) else None), None
    try:
        for name, controller in controllers.items():
            wins, progress = 0, Progress(len(todo[name]), f"evaluate {name}", unit="episodes",
                                         every_s=config.progress_every_s)
            for spec in todo[name]:
                first = _is_first(spec, tasks)
                record, trace = policy_eval.run_episode(
                    env, spec, controller, embedding[spec.instruction], max_steps=e.max_steps,
                    reconfigure=spec.scene != scene, keep_frames=first)
                scene, wins = spec.scene, wins + record["success"]
                if trace is not None:
                    save_episode_images(out_dir, f"{name}_{spec.split}", trace.frames,
                                        e.num_strip_frames)
                    save_trace(_trace_path(out_dir, name, spec), trace,
                               embedding[spec.instruction], record)
                write_json(_episode_path(out_dir, name, spec.key), {**record, "run_id": ids[name]})
                progress.update(1, {"successes": wins})
    finally:
        if env is not None:
            env.close()
    results = {name: summarise([_read(_episode_path(out_dir, name, s.key)) for s in specs])
               for name in controllers}
    write_json(os.path.join(out_dir, "results.json"), results, sort_keys=False)
    print(success_table(results, tasks), flush=True)
    return results
