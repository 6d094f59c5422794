"""PPO in the world model (issue 7): build the env from a pipeline workdir (or random models),
initialise the policy (fresh or from SFT), train in checkpointed chunks.

  run_ppo_world_model(config, workdir)   # config: experiments/configs/ppo_world_model.py
  run_ppo_world_model_stage(config, out_dir)   # the pipeline stage: models, SFT from the workdir

Pipeline artefacts read from `config.pipeline_workdir`: train_tokenizer/, train_world_models/
{action,text}/ (restored with the config's `tokenizer` and `world_models` sections),
tokenize_dataset/<split>/ (instruction embeddings and text features of the start scenes) and the
collect_data dataset (their first frames; the decoded first tokens stand in when it is absent).
The scenes, goals included, are computed once and kept in `workdir/scenes.npz`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.configs.sft import DATASET_SUBDIR
from experiments.stages.world_model import MARGIN_CALIBRATION_FILE, restore_text_model
from roboscape_jax.env import EnvConfig, Scenes, WorldModelEnv, make_scenes, reward_baselines
from roboscape_jax.policies import sft
from roboscape_jax.rl import LogWrapper
from roboscape_jax.rl.loop import train_in_chunks
from roboscape_jax.tokenizer import train as tok_train
from roboscape_jax.tokenizer.api import decode, to_uint8
from roboscape_jax.tokenizer.model import init_params as init_tokenizer_params
from roboscape_jax.utils.files import write_json
from roboscape_jax.world_model import data
from roboscape_jax.world_model import train as wm_train
from roboscape_jax.world_model.margins import MarginCalibration, load_calibration
from roboscape_jax.world_model.model import create_model as create_world_model
from roboscape_jax.world_model.model import init_params as init_world_model_params

SCENES_FILE = "scenes.npz"


def random_models(config, controls: tuple[str, ...] = ("action",)) -> dict[str, tuple[Any, Any]]:
    """{"tokenizer", *controls}: (model, params), randomly initialised (runs without a pipeline;
    random scenes need no text model)."""
    tok = tok_train.create_model(config.tokenizer.model)
    h, w = config.tokenizer.input.frame_height, config.tokenizer.input.frame_width
    models = {"tokenizer": (tok, init_tokenizer_params(tok, jax.random.PRNGKey(0), h, w))}
    for i, control in enumerate(controls):
        model = create_world_model(config.world_models[control].model)
        models[control] = (model, init_world_model_params(model, jax.random.PRNGKey(i + 1)))
    return models


def restore_models(config) -> dict[str, tuple[Any, Any]]:
    """The pipeline's trained tokenizer and world models (EMA tokenizer params)."""
    root = config.pipeline_workdir
    models = {"tokenizer": tok_train.restore_params(os.path.join(root, "train_tokenizer"),
                                                    config.tokenizer)}
    models["action"] = wm_train.restore_params(os.path.join(root, "train_world_models", "action"),
                                               config.world_models.action)
    models["text"] = restore_text_model(config, root)  # one model or the text ensemble
    return models


def random_scenes(n: int, frame_shape: tuple[int, int, int], seed: int) -> Scenes:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (2, n, *frame_shape), dtype=np.uint8)
    text = rng.normal(size=(n, 384)).astype(np.float32)
    return Scenes(jnp.asarray(frames[0]), jnp.asarray(text / np.linalg.norm(text, axis=1,
                                                                              keepdims=True)),
                  jnp.asarray(frames[1]), jnp.ones((n,), bool))


def first_frames(config, episodes: list[data.Episode], models) -> np.ndarray:
    """uint8 [N, H, W, 3] first frames: stored in the token cache, else from the dataset, else
    the decoded first tokens."""
    if all(ep.first_frame is not None for ep in episodes):
        return np.stack([ep.first_frame for ep in episodes]).astype(np.uint8)
    dataset = os.path.join(config.pipeline_workdir, DATASET_SUBDIR)
    if not os.path.isdir(dataset):
        tok, params = models["tokenizer"]
        if tok.reference_conditioning:
            raise FileNotFoundError(f"no dataset at {dataset} and a token cache without first "
                                    "frames: a reference-conditioned tokenizer cannot decode "
                                    "the first tokens without them (re-run tokenize_dataset)")
        return np.asarray(to_uint8(decode(params, np.stack([ep.tokens[0] for ep in episodes]),
                                          model=tok)))
    from data_pipeline.dataset import decode_image, open_split  # reads TFDS

    source = open_split(dataset, config.scenes.split)
    index = {source[i]["episode_metadata"]["episode_key"].decode(): i for i in range(len(source))}
    frames = []
    for ep in episodes:
        obs = source[index[ep.episode_id]]["steps"][0]["observation"]
        frames.append(np.concatenate([decode_image(obs["image"]),
                                      decode_image(obs["wrist_image"])], 0))
    return np.stack(frames)


def pipeline_scenes(config, models) -> Scenes:
    """Evenly spaced token-cache episodes of `scenes.split` with golden-trajectory goals."""
    from experiments.stages.world_model import evenly_spaced

    cache = os.path.join(config.pipeline_workdir, "tokenize_dataset", config.scenes.split)
    episodes = evenly_spaced(data.load_token_cache(cache), config.scenes.num_scenes)
    embedding = []
    for ep in episodes:
        with np.load(os.path.join(cache, f"{ep.episode_id}.npz")) as npz:
            embedding.append(npz["embedding"])
    (tok, tok_params), (text_model, text_params) = models["tokenizer"], models["text"]
    sampling = config.world_models.text.sampling
    return make_scenes(tok, tok_params, text_model, text_params,
                       first_frames(config, episodes, models), np.stack(embedding),
                       np.stack([ep.text for ep in episodes]),
                       np.stack([ep.text_mask for ep in episodes]),
                       jax.random.PRNGKey(config.seed), horizon=config.scenes.golden_horizon,
                       tau=sampling.done_threshold, num_steps=sampling.num_steps,
                       temperature=sampling.temperature)


def load_or_make_scenes(config, models, workdir: str, frame_shape) -> Scenes:
    """The run's scenes: read from `workdir/scenes.npz` when a previous run wrote them."""
    path = os.path.join(workdir, SCENES_FILE)
    if os.path.exists(path):
        with np.load(path) as npz:
            return Scenes(**{k: jnp.asarray(npz[k]) for k in npz.files})
    if config.pipeline_workdir:
        scenes = pipeline_scenes(config, models)
    else:
        scenes = random_scenes(config.scenes.num_random, frame_shape, config.seed)
    os.makedirs(workdir, exist_ok=True)
    fields = {f.name: np.asarray(getattr(scenes, f.name)) for f in dataclasses.fields(scenes)}
    np.savez(path + ".tmp.npz", **fields)
    os.replace(path + ".tmp.npz", path)
    return scenes


def make_env(config, workdir: str) -> tuple[WorldModelEnv, Any]:
    """(env, env params) of the config: trained models when `pipeline_workdir` is set."""
    models = restore_models(config) if config.pipeline_workdir else random_models(config)
    (tok, tok_params), (model, params) = models["tokenizer"], models["action"]
    env = WorldModelEnv(tok, model, EnvConfig.from_config(config.env))
    scenes = load_or_make_scenes(config, models, workdir, env.frame_shape)
    head = None
    if env.config.reward != "world_model":  # a baseline head the pipeline's evaluation fit
        if not config.pipeline_workdir:
            raise ValueError(f"env.reward={env.config.reward!r} needs a fitted head: set "
                             "pipeline_workdir to a workdir whose evaluate_world_models ran")
        head = reward_baselines.load_reward_head(
            reward_head_path(config.pipeline_workdir, env.config.reward))
    return env, env.make_params(tok_params, params, tok_train.load_lpips_params(), scenes, head,
                                pipeline_margin_calibration(config.pipeline_workdir))


def reward_head_path(root: str, name: str) -> str:
    """Where the evaluate_world_models stage of workdir `root` saves the `name` baseline head."""
    return os.path.join(root, "evaluate_world_models", "rewards", f"{name}_head.msgpack")


def margin_calibration_path(root: str) -> str:
    """Where the evaluate_world_models stage of workdir `root` saves the rollouts' margin
    calibration (`world_model_eval.rollout_margins="model"`)."""
    return os.path.join(root, "evaluate_world_models", "action", "eval", MARGIN_CALIBRATION_FILE)


def pipeline_margin_calibration(root: str | None) -> MarginCalibration | None:
    """The margin calibration the evaluation's rollouts used in workdir `root`, so that the env
    generates frames as they did; None where its record says they used the decoded image's
    margins (or there is no record)."""
    if root and chosen_decoding(root).get("rollout_margins") == "model":
        return load_calibration(margin_calibration_path(root))
    return None


def initial_policy_params(config, env: WorldModelEnv, env_params) -> Any | None:
    """The SFT policy's params (log std reset when `reset_log_std`), or None for a fresh policy."""
    if not config.sft_workdir:
        return None
    instruction_dim = env_params.scenes.instruction.shape[-1]
    policy, params = sft.restore_params(config.sft_workdir, config.policy,
                                        frame_shape=env.frame_shape,
                                        instruction_dim=instruction_dim)
    if config.reset_log_std:
        log_std = jnp.full_like(params["params"]["log_std"], policy.log_std_init)
        params = {**params, "params": {**params["params"], "log_std": log_std}}
    return params


def run_ppo_world_model(config, workdir: str) -> dict[str, float]:
    """Trains (or resumes) PPO in the world model; writes and returns `workdir/summary.json`."""
    start = time.perf_counter()
    env, env_params = make_env(config, workdir)
    print(f"ppo_world_model: models and {env_params.scenes.num_scenes} scenes ready in "
          f"{time.perf_counter() - start:.0f} s; compiling the first chunk", flush=True)
    policy = sft.create_policy(config.policy)
    _, summary = train_in_chunks(
        config.ppo, LogWrapper(env), env_params, policy, workdir=workdir,
        rng=jax.random.PRNGKey(config.seed), updates_per_chunk=config.updates_per_checkpoint,
        init_params=initial_policy_params(config, env, env_params),
        progress_every_s=config.progress_every_s, desc="ppo_world_model",
        checkpoint_meta={"policy_config": config.policy.to_dict()})
    summary["num_scenes"] = float(env_params.scenes.num_scenes)
    write_json(os.path.join(workdir, "summary.json"),
               {k: v if math.isfinite(v) else None for k, v in summary.items()})
    print("ppo_world_model: " + ", ".join(f"{k}={v:.4g}" for k, v in summary.items()), flush=True)
    return summary


def chosen_decoding(root: str) -> dict[str, float]:
    """The decode settings the evaluate_world_models stage of workdir `root` chose on val:
    {"copy_penalty", "maskgit_steps", "rollout_margins"} as far as its record has them ({}
    before that stage)."""
    marker = os.path.join(root, "evaluate_world_models", "stage.json")
    if not os.path.exists(marker):
        return {}
    with open(marker) as f:
        action = json.load(f)["result"]["action"]
    return {k: action[k] for k in ("copy_penalty", "maskgit_steps", "rollout_margins")
            if k in action}


def chosen_env_overrides(section: ml_collections.ConfigDict, root: str) -> dict[str, Any]:
    """The env fields that `section` (a `ppo_world_model` config) takes from the decode settings
    chosen on val in workdir `root` (`use_chosen_copy_penalty` / `use_chosen_maskgit_steps`)."""
    chosen, overrides = chosen_decoding(root), {}
    if section.get("use_chosen_copy_penalty") and "copy_penalty" in chosen:
        overrides["copy_penalty"] = float(chosen["copy_penalty"])
    if section.get("use_chosen_maskgit_steps") and "maskgit_steps" in chosen:
        overrides["num_maskgit_steps"] = int(chosen["maskgit_steps"])
    return overrides


def derived_inputs(config, workdir: str) -> dict[str, Any]:
    """What the PPO-in-the-world-model stages read from the evaluation's record: they rerun
    when a rerun of evaluate_world_models chooses other decode settings or margins
    (pipeline.Stage)."""
    chosen = chosen_decoding(workdir)
    margins = {"rollout_margins": chosen["rollout_margins"]} if chosen.get(
        "rollout_margins", "decoded") != "decoded" else {}
    return {**chosen_env_overrides(config.ppo_world_model, workdir), **margins}


def stage_view(config, out_dir: str) -> ml_collections.ConfigDict:
    """The launcher-shaped PPO config of a pipeline `config` whose stage folder is `out_dir`:
    models and scenes of the same workdir, the policy section of `config.sft.model`, and the SFT
    stage's checkpoint as the initial policy when it exists (a fresh policy otherwise)."""
    root = os.path.dirname(os.path.abspath(out_dir))
    section = config.ppo_world_model
    sft_dir = os.path.join(root, "sft")
    has_sft = os.path.isdir(os.path.join(sft_dir, "checkpoints"))
    env = ml_collections.ConfigDict(section.env.to_dict())
    env.update(chosen_env_overrides(section, root))
    return ml_collections.ConfigDict(dict(
        seed=config.seed, pipeline_workdir=root, sft_workdir=sft_dir if has_sft else "",
        reset_log_std=section.reset_log_std, tokenizer=config.tokenizer,
        world_models=config.world_models, policy=config.sft.model, env=env,
        scenes=section.scenes, ppo=section.ppo, text_ensemble=config.text_ensemble,
        updates_per_checkpoint=section.updates_per_checkpoint,
        progress_every_s=config.progress_every_s))


def run_reward_baseline_stage(config, out_dir: str, reward: str) -> dict[str, Any]:
    """PPO in the world model with the `reward` baseline head instead of Eq. (9), otherwise the
    `ppo_world_model` stage's settings, scenes and goals (its scenes.npz is reused when present);
    {"skipped": 1.0} when `config.reward_baselines.rewards` does not name `reward`."""
    if reward not in tuple(config.reward_baselines.rewards):
        print(f"ppo ({reward} reward): not in reward_baselines.rewards: skipped", flush=True)
        return {"skipped": 1.0}
    scenes = os.path.join(os.path.dirname(os.path.abspath(out_dir)), "ppo_world_model",
                          SCENES_FILE)
    if os.path.exists(scenes) and not os.path.exists(os.path.join(out_dir, SCENES_FILE)):
        os.makedirs(out_dir, exist_ok=True)
        shutil.copy(scenes, os.path.join(out_dir, SCENES_FILE))
    return run_ppo_world_model_stage(config, out_dir, reward=reward)


def run_ppo_embedding_reward(config, out_dir: str) -> dict[str, Any]:
    return run_reward_baseline_stage(config, out_dir, "embedding")


def run_ppo_proxy_reward(config, out_dir: str) -> dict[str, Any]:
    return run_reward_baseline_stage(config, out_dir, "proxy")


def run_ppo_world_model_stage(config, out_dir: str, reward: str | None = None
                              ) -> dict[str, Any]:
    """The pipeline's `ppo_world_model` stage (resumes from `out_dir`); `reward` overrides
    `env.reward` (the baseline stages)."""
    view = stage_view(config, out_dir)
    if reward is not None:
        view.env.reward = reward
    print(f"ppo_world_model: initial policy "
          f"{view.sft_workdir or 'fresh (no sft checkpoint in the workdir)'}, copy penalty "
          f"{view.env.copy_penalty}, MaskGIT passes {view.env.num_maskgit_steps}", flush=True)
    summary = run_ppo_world_model(view, out_dir)
    return {**summary, "init": "sft" if view.sft_workdir else "fresh",
            "copy_penalty": float(view.env.copy_penalty),
            "maskgit_steps": int(view.env.num_maskgit_steps), "reward_module": view.env.reward}
