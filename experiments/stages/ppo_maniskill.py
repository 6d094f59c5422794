"""The `ppo_maniskill` stage (issue 7, the paper's "RL w. ManiSkill" baseline): PPO of the same
image policy, from the same SFT checkpoint, in the ManiSkill simulator with its rule-based dense
reward (`RoboScapeEnv.compute_normalized_dense_reward`), on the training data's in-domain scenes.

The simulator runs one episode at a time outside jit (`data_pipeline.policy_eval`); each frame
goes through the observation adapter (tokenizer encode -> decode, as SFT and the world-model env
show the policy); the policy step and the PPO update are jitted (`roboscape_jax.rl.external`).
An episode ends at success (terminated) or after `max_steps` (truncated, bootstrapped). After
each update the train state, the PRNG key, the episode counter and the training wall time so far
are checkpointed
(`checkpoints/`, readable by `policies.loading.restore_policy`) and one `metrics.jsonl` row is
written; a resumed run starts a fresh episode. With `match_wall_time` training stops once it has
run as long as the `ppo_world_model` stage did (or at `ppo.total_timesteps`, whichever is first).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from roboscape_jax.utils.files import write_json


class SimRunner:
    """The simulator episode in progress and the observation the policy sees in it."""

    def __init__(self, env, adapter, tok_params, tasks, scenes, seed: int, max_steps: int,
                 episode: int):
        from data_pipeline import policy_eval

        self.env, self.adapter, self.tok_params = env, adapter, tok_params
        self.tasks, self.scenes, self.seed, self.max_steps = tasks, scenes, seed, max_steps
        self.episode, self.scene, self.returns = episode - 1, None, []
        self._pe, self._embedding = policy_eval, {}
        self.start_episode()

    def start_episode(self) -> None:
        self.episode += 1
        spec = self._pe.training_episode(self.tasks, self.scenes, self.seed, self.episode)
        obs, _ = self.env.reset(seed=spec.seed, options={
            "task": spec.task, "scene": spec.scene, "reconfigure": spec.scene != self.scene})
        self.scene = spec.scene
        if spec.instruction not in self._embedding:
            self._embedding[spec.instruction] = self._pe.embed([spec.instruction])[0]
        self.obs, self.state = self.adapter.reset(self.tok_params, self._pe.two_view_frame(obs),
                                                  self._embedding[spec.instruction])
        self.steps, self.total = 0, 0.0

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool]:
        """(pre-reset next obs, reward, terminated, truncated); resets when the episode ended."""
        action = np.clip(action, -1.0, 1.0).astype(np.float32)
        obs, reward, _, _, info = self.env.step(action)
        next_obs, self.state = self.adapter.step(self.tok_params, self.state,
                                                 self._pe.two_view_frame(obs), action)
        reward = float(np.asarray(reward).reshape(-1)[0])
        terminated = bool(np.asarray(info["success"]).reshape(-1)[0])
        self.steps, self.total = self.steps + 1, self.total + reward
        truncated = self.steps >= self.max_steps and not terminated
        self.obs = next_obs
        if terminated or truncated:
            self.returns.append((self.total, terminated))
            self.start_episode()
        return next_obs, reward, terminated, truncated


def collect(runner: SimRunner, act, value_fn, params, key, num_steps: int):
    """num_steps simulator steps with the policy; returns a Rollout with N = 1."""
    from roboscape_jax.rl.external import Rollout

    batched = lambda o: jax.tree.map(lambda x: jnp.asarray(x)[None], o)  # noqa: E731
    rows: dict[str, list] = {k: [] for k in Rollout._fields}
    for t in range(num_steps):
        obs = runner.obs
        step = act(params, batched(obs), jax.random.fold_in(key, t))
        next_obs, reward, terminated, truncated = runner.step(np.asarray(step.action[0]))
        next_value = value_fn(params, batched(next_obs))[0]
        for name, v in (("obs", obs), ("action", step.action[0]), ("reward", reward),
                        ("terminated", terminated), ("done", terminated or truncated),
                        ("value", step.value[0]), ("log_prob", step.log_prob[0]),
                        ("next_value", next_value)):
            rows[name].append(v)
    stack = lambda xs: jax.tree.map(lambda *x: jnp.stack(x)[:, None], *xs)  # noqa: E731
    return Rollout(**{k: stack(v) for k, v in rows.items()})


def initial_params(config, root: str, policy, frame_shape) -> tuple[str, Any]:
    """("sft", the SFT stage's params with the log std reset to its init), or ("fresh", new
    params) when the workdir has no SFT checkpoint."""
    from roboscape_jax.policies import sft
    from roboscape_jax.policies.image import dummy_observation

    sft_dir = os.path.join(root, "sft")
    if not os.path.isdir(os.path.join(sft_dir, "checkpoints")):
        return "fresh", policy.init(jax.random.PRNGKey(config.seed),
                                    dummy_observation(frame_shape, 384, (1,)))
    _, params = sft.restore_params(sft_dir, config.sft.model, frame_shape=frame_shape)
    log_std = jnp.full_like(params["params"]["log_std"], policy.log_std_init)
    return "sft", {**params, "params": {**params["params"], "log_std": log_std}}


def episode_metrics(finished: list[tuple[float, bool]]) -> dict[str, float]:
    """Mean return and success rate of the (return, success) episodes ended in one update."""
    nan = float("nan")
    return {"episode_return": float(np.mean([r for r, _ in finished])) if finished else nan,
            "success_rate": float(np.mean([s for _, s in finished])) if finished else nan,
            "num_episodes": float(len(finished))}


def wall_time_budget(c, root: str) -> float | None:
    """Seconds of training allowed: with `match_wall_time`, the `ppo_world_model` stage's wall
    time (its stage.json), so both RL regimes get the same time (issue 8 compares them at equal
    wall time); None (no limit: `ppo.total_timesteps` alone) otherwise."""
    if not c.get("match_wall_time", False):
        return None
    marker = os.path.join(root, "ppo_world_model", "stage.json")
    if not os.path.exists(marker):
        raise FileNotFoundError(f"ppo_maniskill.match_wall_time needs the ppo_world_model "
                                f"stage's wall time, and {marker} does not exist: run that "
                                "stage first or set --config.ppo_maniskill.match_wall_time=False")
    with open(marker) as f:
        return float(json.load(f)["wall_time_s"])


def derived_inputs(config, workdir: str) -> dict[str, Any]:
    """The wall-time budget this stage reads from the ppo_world_model stage's record (with
    `match_wall_time`): a rerun of that stage reruns this one, so the two stay time-matched
    (pipeline.Stage). Empty while there is no budget (or no record yet: running then fails
    with `wall_time_budget`'s message)."""
    c = config.ppo_maniskill
    if not c.get("match_wall_time", False) or not os.path.exists(
            os.path.join(workdir, "ppo_world_model", "stage.json")):
        return {}
    return {"wall_time_budget_s": round(wall_time_budget(c, workdir), 1)}


def run_ppo_maniskill(config, out_dir: str) -> dict[str, Any]:
    """Trains (or resumes) PPO in the simulator; returns the last update's figures."""
    from data_pipeline import policy_eval  # needs ManiSkill
    from experiments.stages.evaluate_policies import load_adapter
    from roboscape_jax.policies import sft
    from roboscape_jax.rl.external import (
        create_train_state,
        make_policy_step,
        make_update,
        make_value_fn,
    )
    from roboscape_jax.rl.ppo import PPOConfig, num_updates
    from roboscape_jax.utils.checkpoint import Checkpointer
    from roboscape_jax.utils.metrics import MetricWriter, read_jsonl
    from roboscape_jax.utils.progress import Progress

    root, c = os.path.dirname(os.path.abspath(out_dir)), config.ppo_maniskill
    ppo = PPOConfig.from_config(c.ppo)
    if ppo.num_envs != 1:
        raise ValueError(f"ppo_maniskill steps one simulator env: ppo.num_envs must be 1, got "
                         f"{ppo.num_envs}")
    if ppo.num_steps % ppo.num_minibatches:
        raise ValueError(f"ppo.num_steps {ppo.num_steps} does not divide into "
                         f"{ppo.num_minibatches} minibatches")
    adapter, tok_params, frame_shape = load_adapter(config, root, config.sft.observation_frames)
    policy = sft.create_policy(config.sft.model)
    init, params = initial_params(config, root, policy, frame_shape)
    state = {"train_state": create_train_state(ppo, policy, params),
             "rng": jax.random.PRNGKey(config.seed), "episode": jnp.zeros((), jnp.int32)}
    ckpt = Checkpointer(os.path.join(out_dir, "checkpoints"))
    done, trained_s = ckpt.latest_step() or 0, 0.0
    if done:
        state, meta = ckpt.restore(state)
        trained_s = float(meta.get("train_wall_s", 0.0))
        print(f"ppo_maniskill: resumed after update {done} ({trained_s:.0f} s trained)",
              flush=True)
    budget_s = wall_time_budget(c, root)
    tasks = tuple(c.tasks) or tuple(config.data.tasks)
    scenes = policy_eval.eval_scenes(config.data, seed=config.seed)["ind"]
    env = policy_eval.make_eval_env(image_size=config.data.image_size,
                                    control_freq=config.data.control_freq)
    runner = SimRunner(env, adapter, tok_params, tasks, scenes, c.seed, c.max_steps,
                       int(state["episode"]))
    act, value_fn, update = make_policy_step(policy), make_value_fn(policy), make_update(ppo,
                                                                                        policy)
    writer = MetricWriter(out_dir, resume_step=done if done else None)
    total = num_updates(ppo)
    progress = Progress(total, "ppo_maniskill", start=done, every_s=config.progress_every_s,
                        unit="updates")
    last, start = {}, time.perf_counter()
    try:
        while done < total and (budget_s is None or trained_s < budget_s):
            update_start = time.perf_counter()
            rng, rng_act, rng_update = jax.random.split(state["rng"], 3)
            ts = state["train_state"]
            rollout = collect(runner, act, value_fn, ts.params, rng_act, ppo.num_steps)
            ts, metrics = update(ts, rollout, rng_update)
            metrics = {**{k: float(v) for k, v in metrics.items()},
                       **episode_metrics(runner.returns)}
            runner.returns = []
            done += 1
            state = {"train_state": ts, "rng": rng,
                     "episode": jnp.asarray(runner.episode, jnp.int32)}
            trained_s += time.perf_counter() - update_start
            ckpt.save(done, state, {"policy_config": config.sft.model.to_dict(), "update": done,
                                    "train_wall_s": trained_s}, force=True)
            last = writer.write_scalars(done, metrics)
            progress.update(1, {k: last[k] for k in ("reward", "success_rate") if k in last})
    finally:
        env.close()
        writer.close()
        ckpt.close()
    if not last:  # finished before this call: the last logged update
        last = read_jsonl(os.path.join(out_dir, "metrics.jsonl"))[-1]
    if budget_s is not None and done < total:
        print(f"ppo_maniskill: stopped after update {done} of {total}: {trained_s:.0f} s "
              f"trained, the budget is {budget_s:.0f} s", flush=True)
    summary = {**last, "updates": float(done), "env_steps": float(done * ppo.num_steps),
               "wall_s_this_run": time.perf_counter() - start, "train_wall_s": trained_s,
               "wall_time_budget_s": budget_s, "init": init}
    write_json(os.path.join(out_dir, "summary.json"), summary, default=str)
    return summary
