"""Pipeline stages: train the action and text world models on the token cache, then evaluate them.

Both models train on the in-domain `train` split; the in-domain `val` split picks every decode-time
setting (the copy penalty); the out-of-domain `ood` split is the test, as are in-domain figures
reported on `val` for comparison. Figures, plots and GIFs go to `<stage>/<control>/`.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time
from typing import Any

import ml_collections
import numpy as np

from experiments import pipeline
from experiments.stages import trainer_parallel
from experiments.stages.tokenizer import dataset_dir
from roboscape_jax.env import reward_baselines
from roboscape_jax.tokenizer import train as tok_train
from roboscape_jax.utils.files import write_json
from roboscape_jax.world_model import data, ensemble
from roboscape_jax.world_model import evaluate as wm_eval
from roboscape_jax.world_model import train as wm_train
from roboscape_jax.world_model.margins import flat_calibration, save_calibration

CONTROLS = ("action", "text")


def _workdir(out_dir: str, stage: str) -> str:
    return os.path.join(os.path.dirname(out_dir), stage)


def load_cache(out_dir: str, split: str) -> list[data.Episode]:
    """Token-cache episodes of `split` written by the tokenize_dataset stage of this workdir."""
    return data.load_token_cache(os.path.join(_workdir(out_dir, "tokenize_dataset"), split))


def run_train_world_models(config, out_dir: str) -> dict[str, Any]:
    train, val = load_cache(out_dir, "train"), load_cache(out_dir, "val")
    print(f"world models: {len(train)} train episodes, {len(val)} validation episodes", flush=True)
    return {control: _train_one(config, config.world_models[control],
                                os.path.join(out_dir, control), train, val,
                                f"world model {control}") for control in CONTROLS}


IDENTITY_FILE = "identity.json"  # a finished world model's `model_identity`
# evaluate_world_models/action/eval/: the rollouts' margin calibration (rollout_margins="model")
MARGIN_CALIBRATION_FILE = "margin_calibration.json"


def model_identity(config, section) -> str:
    """What a trained world model depends on: the pipeline's seed, the data and tokenizer sections
    (the token cache it learned from) and its own section (seed and steps included)."""
    probe = {"seed": config.seed, "data": config.data.to_dict(),
             "tokenizer": config.tokenizer.to_dict(),
             "world_models": {section.model.control: section.to_dict()}}
    return pipeline.config_hash(probe, ("data", "tokenizer", "world_models"))


def carry_over(path: str, identity: str) -> str | None:
    """Copies into `path` (atomically) the finished model of this `identity` that a replaced run of
    its stage holds at the same place (`<stage>.replaced-<hash>/<name>`); returns the folder it
    came from, or None when there is none."""
    stage_dir, name = os.path.split(os.path.normpath(path))
    for aside in sorted(glob.glob(glob.escape(stage_dir) + ".replaced-*")):
        source = os.path.join(aside, name)
        marker = os.path.join(source, IDENTITY_FILE)
        if not (os.path.exists(marker) and os.path.exists(os.path.join(source, "eval",
                                                                           "metrics.json"))):
            continue
        with open(marker) as f:
            if json.load(f).get("identity") != identity:
                continue
        partial = f"{path}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial)
        os.rename(partial, path)
        return source
    return None


def _train_one(config, section, path: str, train, val, label: str) -> dict[str, Any]:
    """Trains (or resumes) one world model of `section` into `path`; its held-out metrics and
    wall time, printed after `label`. A model that finished in a replaced run of this stage
    (the pipeline moves a stage whose config changed aside) with the same identity
    (`model_identity`) is copied from there instead of trained again: changing the text model
    does not retrain the action model."""
    start = time.time()
    identity = model_identity(config, section)
    source = None if os.path.exists(path) else carry_over(path, identity)
    if source:
        print(f"{label}: data, tokenizer and its own section as in {source}, where it finished: "
              "copied from there, not trained again", flush=True)
    wm_train.train_and_evaluate(section, path, {"train": train, "held_out": val},
                                parallel=trainer_parallel(config, "world_models"))
    write_json(os.path.join(path, IDENTITY_FILE), {"identity": identity})
    with open(os.path.join(path, "eval", "metrics.json")) as f:
        result = {**json.load(f), "seed": section.seed, "wall_s": time.time() - start}
    print(f"{label}: " + ", ".join(f"{name}={v:.4g}" for name, v in result.items()), flush=True)
    return {**result, "carried_over_from": source} if source else result


def text_model_dirs(members: int, workdir: str) -> list[str]:
    """Run folders of the text model's `members` (`text_ensemble.members`): train_world_models'
    text model, then the train_text_ensemble stage's member1, member2, ..."""
    dirs = [os.path.join(workdir, "train_world_models", "text")]
    dirs += [os.path.join(workdir, "train_text_ensemble", f"member{k}") for k in range(1, members)]
    missing = [d for d in dirs if not os.path.isdir(os.path.join(d, "checkpoints"))]
    if missing:
        raise FileNotFoundError(f"text_ensemble.members={members} needs trained text models in "
                                f"{missing}: run the train_world_models and train_text_ensemble "
                                "stages first")
    return dirs


def restore_text_model(config, workdir: str) -> tuple[Any, Any]:
    """(model, params) of the pipeline's text model: one `WorldModel`, or an `EnsembleModel` of
    `text_ensemble.members` of them (`ensemble.restore_ensemble`)."""
    members = config.text_ensemble.members if "text_ensemble" in config else 1
    return ensemble.restore_ensemble(text_model_dirs(members, workdir), config.world_models.text)


def run_train_text_ensemble(config, out_dir: str) -> dict[str, Any]:
    """Text models 1 .. members - 1 of the ensemble (`text_ensemble.members`), each the
    train_world_models text model's config with seed + k, in `member<k>/` (resumable);
    {"skipped": 1.0} with one member."""
    members = config.text_ensemble.members
    if members < 2:
        print("text ensemble: text_ensemble.members = 1: skipped", flush=True)
        return {"skipped": 1.0}
    train, val = load_cache(out_dir, "train"), load_cache(out_dir, "val")
    results = {}
    for k in range(1, members):
        member = ml_collections.ConfigDict(config.world_models.text.to_dict())
        member.seed = config.world_models.text.seed + k
        results[f"member{k}"] = _train_one(config, member, os.path.join(out_dir, f"member{k}"),
                                           train, val, f"text ensemble member{k}")
    return results


def evenly_spaced(items: list, num: int) -> list:
    """At most `num` items, evenly spaced over `items` (all of them when there are fewer)."""
    if len(items) <= num:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, num).round().astype(int)]


def _frames(dataset: str, split: str, episodes: list[data.Episode]) -> dict[str, np.ndarray]:
    from data_pipeline.dataset import DatasetEpisodes  # reads the TFDS dataset

    source = DatasetEpisodes(dataset, split)
    return {ep.episode_id: source.get_episode(ep.episode_id) for ep in episodes}


def _contexts(config, out_dir: str,
              model_dirs: dict[str, str] | None = None) -> dict[str, wm_eval.EvalContext]:
    """The trained world models with the tokenizer and LPIPS (each loaded once). `model_dirs`:
    control -> run folder of the models to load (default: both of this workdir)."""
    tok_model, tok_params = tok_train.restore_params(_workdir(out_dir, "train_tokenizer"),
                                                     config.tokenizer)
    lpips = tok_train.load_lpips_params()
    if model_dirs is None:
        models = {"action": wm_train.restore_params(
                      os.path.join(_workdir(out_dir, "train_world_models"), "action"),
                      config.world_models.action),
                  "text": restore_text_model(config, os.path.dirname(out_dir))}
    else:
        models = {control: wm_train.restore_params(path, config.world_models[control])
                  for control, path in model_dirs.items()}
    return {control: wm_eval.EvalContext(*model, tok_model, tok_params, lpips)
            for control, model in models.items()}


Frames = dict[str, dict[str, np.ndarray]]  # split -> episode id -> uint8 [T, H, W, 3]


def evaluate_action(config, ctx: wm_eval.EvalContext, out_dir: str,
                    splits: dict[str, list[data.Episode]], frames: Frames) -> dict:
    """The decode settings (copy penalty and MaskGIT passes) chosen on val by one-step accuracy
    and open-loop LPIPS; with them, one-step metrics, open-loop rollouts and controllability on
    val and ood, the compile count, and GIFs of OOD rollouts."""
    wm = config.world_models["action"]
    ev = config.world_model_eval
    out = os.path.join(out_dir, "action")
    windows = {split: data.fixed_windows(splits[split], num_windows=wm.eval.num_windows,
                                         num_frames=wm.model.num_frames, seed=config.seed)
               for split in ("val", "ood")}
    one_step_cache: dict[tuple[str, float], dict[str, float]] = {}

    def one_step(split: str, penalty: float) -> dict[str, float]:
        if (split, penalty) not in one_step_cache:
            step = wm_train.make_eval_step(wm, ctx.model, penalty)
            one_step_cache[split, penalty] = wm_train.evaluate(
                step, ctx.params, windows[split], wm.eval.batch_size, wm.model.num_bits)
        return one_step_cache[split, penalty]

    starts = {split: wm_eval.rollout_starts(
        splits[split], frames[split], num_context=wm.model.num_frames - 1, horizon=ev.horizon,
        starts_per_episode=ev.starts_per_episode, seed=config.seed) for split in ("val", "ood")}
    # A generated frame's bit margins: the model's own ("model": its latent head's, or its bit
    # probabilities through a calibration fitted on train windows), or those of its decoded
    # image ("decoded"). A latent-head model never reads the calibration, so it gets no fit:
    # the flat stand-in is saved only so that the env's switch (`EnvParams`) has one to load.
    calibration = None
    if wm.model.get("margin_inputs", False) and ev.get("rollout_margins", "decoded") == "model":
        calibration = (flat_calibration() if wm.model.get("latent_head", False) else
                       wm_eval.fit_rollout_margins(ctx, splits["train"], seed=config.seed))
        save_calibration(os.path.join(out, "eval", MARGIN_CALIBRATION_FILE), calibration)
    # Every decode-time setting (copy penalty, MaskGIT passes) is scored on val only.
    steps_options = tuple(ev.get("maskgit_steps", (wm.sampling.num_steps,)))
    sweep = {p: one_step("val", p) for p in wm.sampling.copy_penalties}
    rollout_fns, val_open_loop = {}, {}
    for num_steps in steps_options:
        penalised = wm_eval.make_penalised_rollout_fn(ctx, num_steps=num_steps,
                                                      margin_calibration=calibration)
        for p in wm.sampling.copy_penalties:
            rollout_fns[num_steps, p] = wm_eval.make_rollout_fn(
                ctx, num_steps=num_steps, copy_penalty=p, penalised=penalised)
            val_open_loop[num_steps, p] = wm_eval.open_loop_metrics(
                ctx, rollout_fns[num_steps, p], starts["val"], batch_size=ev.batch_size)
    num_steps, penalty = wm_eval.choose_decoding(
        sweep, {pair: m["model_lpips"] for pair, (m, _) in val_open_loop.items()})
    report: dict[str, Any] = {
        "copy_penalty": penalty, "maskgit_steps": num_steps,
        "rollout_margins": "model" if calibration is not None else "decoded",
        "val_penalty_sweep": {
            str(p): {**m, "open_loop_lpips": val_open_loop[num_steps, p][0]["model_lpips"],
                     "open_loop_lpips_by_maskgit_steps": {
                         str(n): val_open_loop[n, p][0]["model_lpips"] for n in steps_options}}
            for p, m in sweep.items()},
        "action_stats": wm_train.read_action_stats(
            os.path.join(_workdir(out_dir, "train_world_models"), "action"))}
    rollout_fn = rollout_fns[num_steps, penalty]
    train_actions = np.abs(np.concatenate([ep.actions for ep in splits["train"]]))
    action_range = np.max(train_actions, 0)
    speed = np.quantile(train_actions, 0.95, axis=0)  # a brisk but in-range move per axis
    for split in ("val", "ood"):
        open_loop, predicted = (val_open_loop[num_steps, penalty] if split == "val" else
                                wm_eval.open_loop_metrics(ctx, rollout_fn, starts[split],
                                                          batch_size=ev.batch_size))
        report[split] = {
            "one_step": one_step(split, penalty),
            "one_step_no_penalty": one_step(split, 0.0),
            "open_loop": open_loop,
            "controllability": wm_eval.controllability(
                ctx, rollout_fn, starts[split], action_range=action_range,
                batch_size=ev.batch_size, done_threshold=wm.sampling.done_threshold),
        }
        grid, moved = wm_eval.controllability_grid(ctx, rollout_fn, starts[split], clip=0,
                                                   speed=speed, action_range=action_range,
                                                   batch_size=ev.batch_size)
        wm_eval.write_controllability_grid(
            os.path.join(out, f"controllability_{split}.png"), grid, list(moved))
        report[split]["controllability"]["moved_from_zero"] = moved
        if split == "ood":
            wm_eval.write_rollout_gifs(os.path.join(out, "videos"), ctx, starts[split], predicted,
                                       num=ev.num_videos)
    report["rollout_compiles"] = int(rollout_fn._cache_size())
    write_json(os.path.join(out, "eval", "report.json"), report)
    return report


def evaluate_text(config, ctx: wm_eval.EvalContext, out_dir: str,
                  splits: dict[str, list[data.Episode]], frames: Frames):
    """Golden-trajectory goals of a fixed subset of val and ood episodes. Returns (report,
    {split: (episodes, goal frames uint8 [N, H, W, 3])})."""
    wm = config.world_models["text"]
    ev = config.world_model_eval
    report, goals = {}, {}
    for split in ("val", "ood"):
        episodes = evenly_spaced(splits[split], ev.max_text_episodes)
        metrics, images = wm_eval.evaluate_text_model(
            ctx, episodes, frames[split], horizon=ev.golden_horizon,
            tau=wm.sampling.done_threshold, num_steps=wm.sampling.num_steps,
            batch_size=ev.batch_size)
        report[split] = metrics
        goals[split] = (episodes, np.asarray(images["goal"]))
        wm_eval.write_goal_grid(os.path.join(out_dir, "text", f"goals_{split}.png"), images,
                                num=ev.num_videos)
    write_json(os.path.join(out_dir, "text", "eval", "report.json"), report)
    return report, goals


def frame_rule_reward(episode: data.Episode) -> np.ndarray:
    """The rule reward of each frame [T]: the dataset's reward[t] is paid on arriving at frame t + 1
    (the last entry, after the final frame, is 0), so frame t gets reward[t - 1] and frame 0 the
    first entry."""
    return np.concatenate([episode.reward[:1], episode.reward[:-1]]).astype(np.float32)


def first_frames(episodes: list[data.Episode]) -> list[np.ndarray] | None:
    """Each cached episode's first real frame (None for caches that do not store it)."""
    if any(ep.first_frame is None for ep in episodes):
        return None
    return [ep.first_frame for ep in episodes]


def fit_reward_baselines(ctx: wm_eval.EvalContext, train: list[data.Episode], *, steps: int,
                         max_episodes: int | None = None, seed: int = 0
                         ) -> tuple[dict[str, reward_baselines.RewardHead], dict[str, Any]]:
    """The paper's learned baselines, fit to the simulator's rule reward of the `train` episodes
    (at most `max_episodes` of them, evenly spaced, since featurising every frame is the cost):
    an embedding head on the action model's features of each real frame (iVideoGPT) and a proxy
    MLP on the frame decoded from its tokens (DiWA; what the policy would see in the env).
    Returns the heads and what they were fit on ({"episodes", "frames", <name>: fit errors})."""
    train = [ep for ep in train if ep.reward is not None]
    if max_episodes is not None:
        train = evenly_spaced(train, max_episodes)
    if not train:
        print("rewards: the token cache has no rule reward (re-run tokenize_dataset); the learned "
              "baselines are skipped", flush=True)
        return {}, {}
    rewards = np.concatenate([frame_rule_reward(ep) for ep in train])
    embedded = wm_eval.teacher_forced_outputs(ctx, train)
    inputs = {"embedding": np.concatenate([f for _, f in embedded]),
              "proxy": np.concatenate([np.asarray(reward_baselines.pooled_frame_features(f))
                                       for f in wm_eval.decode_episodes(
                                           ctx, train, first_frames=first_frames(train))])}
    heads, fits = {}, {"episodes": len(train), "frames": len(rewards)}
    for name, features in inputs.items():
        heads[name], fits[name] = reward_baselines.fit_reward_head(features, rewards, steps=steps,
                                                                   seed=seed)
        print(f"rewards: {name} baseline fit on {len(rewards)} frames of {len(train)} train "
              f"episodes, MSE {fits[name]['train_mse']:.4f} (a constant: "
              f"{fits[name]['train_mse_of_mean']:.4f})", flush=True)
    return heads, fits


def save_reward_heads(out_dir: str, heads: dict[str, reward_baselines.RewardHead]) -> None:
    """`out_dir/rewards/<name>_head.msgpack`: what the world-model env's baseline rewards load
    (`ppo_world_model.reward_head_path`)."""
    for name, head in heads.items():
        reward_baselines.save_reward_head(
            os.path.join(out_dir, "rewards", f"{name}_head.msgpack"), head)


def reward_diagnostics(config, ctx: wm_eval.EvalContext, out_dir: str, goals,
                       frames: Frames, train: list[data.Episode]) -> dict[str, Any]:
    """Paper Fig. 3 at this scale: rewards along real successful expert episodes, their rank
    correlation with time per reward type, view and task, and a PNG of a few curves. `ctx` holds
    the action model (its done head gives the sparse term; its features feed the embedding
    baseline). Rewards: the oracle (LPIPS to the real final frame), the world-model reward, the
    simulator's rule reward, and the embedding and proxy baselines fit on `train`."""
    tau = config.world_models["action"].sampling.done_threshold
    ev = config.world_model_eval
    heads, fits = fit_reward_baselines(ctx, train, steps=ev.reward_fit_steps,
                                       max_episodes=ev.reward_fit_episodes,
                                       seed=config.seed)
    save_reward_heads(out_dir, heads)
    report: dict[str, Any] = {"baseline_fit": fits}
    for split, (episodes, goal) in goals.items():
        keep = [i for i, ep in enumerate(episodes) if ep.done[-1] >= 0.5]  # successful only:
        episodes = [episodes[i] for i in keep]  # their final frame is a meaningful goal
        outputs = wm_eval.teacher_forced_outputs(ctx, episodes)
        decoded = (wm_eval.decode_episodes(ctx, episodes, first_frames=first_frames(episodes))
                   if "proxy" in heads else None)
        rows = []
        for j, (ep, (done, features)) in enumerate(zip(episodes, outputs, strict=True)):
            curves = wm_eval.reward_curves(ctx, frames[split][ep.episode_id], goal[keep[j]], done,
                                           tau=tau)
            if ep.reward is not None:
                curves["rule"] = frame_rule_reward(ep)
            if "embedding" in heads:
                curves["embedding"] = np.asarray(heads["embedding"].predict(features))
            if "proxy" in heads:
                curves["proxy"] = np.asarray(heads["proxy"].predict(
                    reward_baselines.pooled_frame_features(decoded[j])))
            rows.append((ep, curves))
        rho = {name: [wm_eval.spearman(c[name]) for _, c in rows] for name in rows[0][1]}
        summary = {}
        for name, values in rho.items():
            v = np.asarray(values, np.float64)
            summary[name] = {"median_rho": float(np.nanmedian(v)),
                             "fraction_rho_ge_0.7": float(np.nanmean(v >= 0.7)),
                             "per_task_median_rho": {
                                 str(task): float(np.nanmedian(v[[ep.task_id == task
                                                                   for ep, _ in rows]]))
                                 for task in sorted({ep.task_id for ep, _ in rows})}}
        report[split] = {"num_episodes": len(rows), "rewards": summary}
        wm_eval.plot_reward_curves(os.path.join(out_dir, "rewards", f"curves_{split}.png"),
                                   rows[:4])
    write_json(os.path.join(out_dir, "rewards", "report.json"), report)
    return report


def run_evaluate_world_models(config, out_dir: str) -> dict[str, Any]:
    splits = {s: load_cache(out_dir, s) for s in ("train", "val", "ood")}
    frames = {s: _frames(dataset_dir(out_dir), s, splits[s]) for s in ("val", "ood")}
    ctx = _contexts(config, out_dir)
    ev = config.world_model_eval

    def timed(part: str, what: str, run):
        """run(), printing `what` before and the wall time after; the time goes into its report
        (the first element of a tuple result)."""
        print(f"evaluate_world_models: {what}", flush=True)
        start = time.time()
        out = run()
        report = out[0] if isinstance(out, tuple) else out
        report["wall_s"] = time.time() - start
        print(f"evaluate_world_models: {part} done in {report['wall_s']:.0f} s", flush=True)
        return out

    results: dict[str, Any] = {"action": timed(
        "action", f"action model: one-step, {ev.horizon}-step open loop and controllability on "
        "val and ood, the copy-penalty sweep on val",
        lambda: evaluate_action(config, ctx["action"], out_dir, splits, frames))}
    results["text"], goals = timed(
        "text", f"text model: golden trajectories of up to {ev.max_text_episodes} episodes per "
        "split", lambda: evaluate_text(config, ctx["text"], out_dir, splits, frames))
    results["rewards"] = timed(
        "rewards", "reward diagnostics: fit the embedding and proxy baselines, reward curves",
        lambda: reward_diagnostics(config, ctx["action"], out_dir, goals, frames,
                                   splits["train"]))
    print(headline(results), flush=True)
    return results


def headline(results: dict[str, Any]) -> str:
    """The acceptance figures of issue 5 as a few lines."""
    lines = []
    a = results["action"]
    for split in ("val", "ood"):
        s, o, c = a[split]["one_step"], a[split]["open_loop"], a[split]["controllability"]
        gain = o["lpips_gain_vs_tokenized_copy"]
        lines.append(
            f"action {split}: token acc {s['token_accuracy']:.4f} (copy "
            f"{s['copy_accuracy']:.4f}), changed-token acc {s['changed_token_accuracy']:.3f} (bits "
            f"{s['changed_bit_accuracy']:.3f}), "
            f"done AUROC {s['done_auroc']:.3f}; {int(o['horizon'])}-step LPIPS "
            f"{o['model_lpips']:.4f} vs tokenized copy {o['tokenized_copy_lpips']:.4f} "
            f"({100 * abs(gain):.1f}% {'lower' if gain >= 0 else 'higher'}), raw copy "
            f"{o['raw_copy_lpips']:.4f}; tokens changed per step (%) " + " ".join(
                f"{100 * o.get(f'changed_tokens_step{k}', float('nan')):.1f}"
                for k in range(1, int(o["horizon"]) + 1)) + "; real beats negated actions in "
            f"{100 * c['real_beats_negated_fraction']:.0f}% of clips; done fires in "
            f"{100 * c['done_fired_fraction_real_actions']:.0f}% of clips (gripper held open: "
            f"{100 * c['done_fired_fraction_gripper_open']:.0f}%)")
    for split in ("val", "ood"):
        t = results["text"][split]
        lines.append(f"text {split}: goal closer to the real final frame than the initial frame "
                     f"in {100 * t['goal_closer_than_initial_fraction']:.0f}% of "
                     f"{int(t['num_episodes'])} episodes (tokenized initial: "
                     f"{100 * t['goal_closer_than_tokenized_initial_fraction']:.0f}%)")
    for split in ("val", "ood"):
        r = results["rewards"][split]["rewards"]
        lines.append(f"reward rank correlation with progress, {split} (median rho, both views / "
                     "third view): " + ", ".join(
                         f"{name} {r[f'{name}_both']['median_rho']:.2f} / "
                         f"{r[f'{name}_third']['median_rho']:.2f}"
                         for name in ("oracle_dense", "world_model_dense", "world_model")))
    for split in ("val", "ood"):
        r = results["rewards"][split]["rewards"]
        learned = [name for name in ("rule", "embedding", "proxy") if name in r]
        if learned:
            lines.append(f"rule reward and learned baselines, {split} (median rho): " + ", ".join(
                f"{name} {r[name]['median_rho']:.2f}" for name in learned))
    lines.append(f"copy penalty (chosen on val): {a['copy_penalty']}, MaskGIT passes "
                 f"{a.get('maskgit_steps', '?')}; rollout compiles: {a['rollout_compiles']}")
    return "\n".join(lines)
