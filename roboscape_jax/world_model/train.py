"""Trains an action or text world model on token-cache episodes, data-parallel over every device.

  state = train_and_evaluate(config, workdir, {"train": episodes, "held_out": episodes})

`config` is the world-model section (experiments/configs/world_model.py). The batch of step s is a
fixed function of (seed, s) and the masks come from fold_in(rng, step), so a killed run resumes
with the same numbers (utils.training.train_loop). Checkpoints carry the model config and resuming
from another one raises ValueError (the tokenizer trainer's fingerprint helpers). Evaluation masks
the whole last frame of fixed held-out windows, predicts it in one greedy pass and reports token
accuracy overall and on changing tokens next to copying the previous frame, and done AUROC/RMSE.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from roboscape_jax.tokenizer.train import check_resume_compatible, make_optimizer, model_fingerprint
from roboscape_jax.types import PyTree
from roboscape_jax.utils import sharding
from roboscape_jax.utils.checkpoint import Checkpointer
from roboscape_jax.utils.curves import (
    WORLD_MODEL_BASELINES,
    WORLD_MODEL_PANELS,
    write_training_curves,
)
from roboscape_jax.utils.files import write_json
from roboscape_jax.utils.training import TrainState, create_train_state, make_train_step, train_loop
from roboscape_jax.world_model import data, losses
from roboscape_jax.world_model.masking import training_mask
from roboscape_jax.world_model.model import WorldModel, create_model, init_params
from roboscape_jax.world_model.sampling import copy_penalised

EVAL_METRICS = ("token_accuracy", "changed_token_accuracy", "copy_accuracy", "changed_fraction")
ACTION_STATS_FILE = "action_stats.json"
# Model-config fields added after checkpoints of them existed, with the value those checkpoints
# were trained with: an older checkpoint lacking the field still loads.
FIELDS_ADDED_LATER = {"frame_stride": 1, "plan_frames": 0, "generated_margin_flag": False,
                     "latent_head": False}


def action_statistics(episodes: Sequence[data.Episode], min_std: float = 1e-3) -> dict[str, list]:
    """Per-dimension mean and std (floored at `min_std`) of every action of `episodes`."""
    actions = np.concatenate([ep.actions for ep in episodes]).astype(np.float64)
    return {"mean": actions.mean(0).tolist(),
            "std": np.maximum(actions.std(0), min_std).tolist()}


def load_or_write_action_stats(workdir: str, episodes: Sequence[data.Episode]) -> dict[str, list]:
    """The run's action statistics: read from `workdir` when a previous run wrote them (so a
    resumed model normalises exactly as before), else computed from `episodes` and written."""
    stats = read_action_stats(workdir)
    if stats is None:
        stats = action_statistics(episodes)
        write_json(os.path.join(workdir, ACTION_STATS_FILE), stats)
    return stats


def read_action_stats(workdir: str) -> dict[str, list] | None:
    path = os.path.join(workdir, ACTION_STATS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def control_inputs(batch: Mapping[str, jax.Array], control: str):
    """(control, control_mask) of a batch for the model's control type."""
    if control == "action":
        return batch["actions"], None
    return batch["text"], batch["text_mask"]


def init_state(config, model: WorldModel, tx: optax.GradientTransformation) -> TrainState:
    rng, rng_init = jax.random.split(jax.random.PRNGKey(config.seed))
    return create_train_state(init_params(model, rng_init), tx, rng)


def changed_weights(tokens: jax.Array, changed_weight: float) -> jax.Array:
    """[B, T, h, w]: `changed_weight` where a token differs from the previous frame's, else 1."""
    changed = jnp.concatenate([jnp.zeros_like(tokens[:, :1], bool),
                               tokens[:, 1:] != tokens[:, :-1]], axis=1)
    return jnp.where(changed, changed_weight, 1.0)


def mix_generated_margins(rng: jax.Array, batch: Mapping[str, jax.Array]
                          ) -> tuple[jax.Array, jax.Array]:
    """(margins [B, T, h, w, K], margins_generated bool [B, T]): per window, the g most recent
    context frames (g uniform in 0..T-1) take their decoded frame's margins, as a rollout's
    window holds g generated frames after g steps (the last frame's margins are never read)."""
    if "generated_margins" not in batch:
        raise ValueError("a model with generated_margin_flag trains on the decoded frames' "
                         "margins too: the token cache lacks 'generated_margins' (write it with "
                         "tokenize_dataset's cache.generated_margins=True)")
    real, decoded = batch["margins"], batch["generated_margins"]
    chex.assert_equal_shape([real, decoded])
    b, t = real.shape[:2]
    count = jax.random.randint(rng, (b, 1), 0, t)  # generated context frames
    generated = jnp.arange(t)[None] >= (t - 1 - count)
    return jnp.where(generated[..., None, None, None], decoded, real), generated


def randomize_gripper(rng: jax.Array, actions: jax.Array, fraction: float
                      ) -> tuple[jax.Array, jax.Array]:
    """(actions [B, T, A], randomized bool [B]): in a `fraction` of the windows the gripper (the
    last action dimension) is replaced by random +-1 per frame. Their done labels stay true, so
    the done head cannot read success off the gripper command (the expert opens it at the end:
    a policy that opens it early would end its imagined episode); their frames no longer follow
    from the actions, so the caller scores no tokens of them."""
    chex.assert_rank(actions, 3)
    rng_pick, rng_sign = jax.random.split(rng)
    randomized = jax.random.uniform(rng_pick, actions.shape[:1]) < fraction
    signs = jnp.where(jax.random.bernoulli(rng_sign, 0.5, actions.shape[:2]), 1.0, -1.0)
    gripper = jnp.where(randomized[:, None], signs.astype(actions.dtype), actions[..., -1])
    return actions.at[..., -1].set(gripper), randomized


def make_loss_fn(config, model: WorldModel):
    """loss_fn(params, batch, rng) -> (Eq. 4 loss, metrics) with a fresh MaskGIT mask per step."""
    m, mk = config.model, config.masking
    gripper_fraction = config.loss.get("done_gripper_fraction", 0.0)
    if gripper_fraction and m.control != "action":
        raise ValueError("loss.done_gripper_fraction randomizes an action; this is a "
                         f"{m.control!r} model")

    def loss_fn(params: PyTree, batch: Mapping[str, jax.Array], rng: jax.Array):
        tokens = batch["tokens"]
        margins, generated = batch.get("margins"), None
        if m.get("generated_margin_flag", False):  # (others keep their masks' random stream)
            rng, rng_margins = jax.random.split(rng)
            margins, generated = mix_generated_margins(rng_margins, batch)
        control, control_mask = control_inputs(batch, m.control)
        scored_windows = jnp.ones(tokens.shape[:1], bool)
        if gripper_fraction:  # (likewise)
            rng, rng_gripper = jax.random.split(rng)
            control, randomized = randomize_gripper(rng_gripper, control, gripper_fraction)
            scored_windows = ~randomized
        mask = training_mask(rng, tokens.shape[0], m.num_frames, (m.grid_height, m.grid_width),
                             num_context_frames=mk.num_context_frames,
                             full_mask_prob=mk.full_mask_prob)
        out = model.apply(params, tokens, control, control_mask, mask,
                          margins, margins_generated=generated)
        scored = mask & scored_windows[:, None, None, None]  # the tokens the losses score
        weights = changed_weights(tokens, config.loss.changed_weight)
        visual = losses.masked_token_cross_entropy(out.logits, tokens, scored, weights)
        done = losses.done_rmse(out.done, batch["done"])
        metrics = {"visual_loss": visual, "done_rmse": done,
                   "done_accuracy": losses.done_accuracy(out.done, batch["done"]),
                   **losses.token_metrics(out.logits, tokens, scored)}
        loss = losses.total_loss(visual, done, config.loss.done_weight)
        if m.get("latent_head", False):
            latent = losses.latent_mse(out.latents, tokens, margins, scored)
            metrics.update(latent_mse=latent, latent_mse_copy=losses.latent_mse(
                None, tokens, margins, scored))
            loss = loss + config.loss.latent_weight * latent
        return loss, metrics

    return loss_fn


def make_step(config, model: WorldModel, tx, mesh, state_sharding=None):
    """`step(state, batch) -> (state, metrics)`, data-parallel over `mesh`; the state placed as
    `state_sharding` says (default replicated; `sharding.state_shardings` for FSDP)."""
    return sharding.data_parallel_jit(make_train_step(make_loss_fn(config, model), tx), mesh,
                                      state_sharding=state_sharding)


def make_eval_step(config, model: WorldModel, copy_penalty: float = 0.0):
    """Jitted (params, batch) -> (greedy last-frame tokens [B, h, w], last-frame done [B]) with
    the whole last frame masked: the first pass of `sampling.predict_next_frame`."""

    @jax.jit
    def eval_step(params: PyTree, batch: Mapping[str, jax.Array]):
        tokens = batch["tokens"]
        mask = jnp.zeros(tokens.shape, bool).at[:, -1].set(True)
        out = model.apply(params, tokens, *control_inputs(batch, config.model.control), mask,
                          batch.get("margins"))
        b, _, h, w = tokens.shape
        logits = out.logits[:, -1].reshape(b, h * w, *out.logits.shape[-2:])
        logits = copy_penalised(logits, tokens[:, -2].reshape(b, h * w), model.config.num_bits,
                                copy_penalty)
        return losses.predicted_tokens(logits).reshape(b, h, w), out.done[:, -1]

    return eval_step


def changed_bit_accuracy(pred: np.ndarray, target: np.ndarray, previous: np.ndarray,
                         num_bits: int) -> float:
    """Fraction of code bits predicted right on the tokens that change: partial credit that
    full-code accuracy does not give (a code with most bits right decodes to a similar patch)."""
    changed = target != previous
    if not changed.any():
        return float("nan")
    shifts = np.arange(num_bits)
    bits = lambda x: (x[changed][:, None] >> shifts) & 1  # noqa: E731
    return float(np.mean(bits(pred) == bits(target)))


def evaluate(eval_step, params: PyTree, windows: Mapping[str, np.ndarray],
             batch_size: int, num_bits: int | None = None) -> dict[str, float]:
    """One-step greedy metrics over fixed `windows` (trimmed to a multiple of `batch_size`).

    `done_auroc` is left out where the windows' done labels have one class (it is undefined
    there, not NaN: every keyframe plan of the text model ends done)."""
    n = len(windows["tokens"])
    size = min(batch_size, n)
    preds, dones = [], []
    for i in range(0, n - n % size, size):
        pred, done = eval_step(params, {k: v[i:i + size] for k, v in windows.items()})
        preds.append(np.asarray(pred)), dones.append(np.asarray(done))
    pred, done = np.concatenate(preds), np.concatenate(dones)
    tokens, label = windows["tokens"][:len(pred)], windows["done"][:len(pred), -1]
    target, previous = tokens[:, -1], tokens[:, -2]
    changed = target != previous
    done_auroc = losses.auroc(done, label)  # NaN where a class is absent
    return {"token_accuracy": float(np.mean(pred == target)),
            "changed_token_accuracy": float(np.mean(pred[changed] == target[changed]))
            if changed.any() else float("nan"),
            "copy_accuracy": float(np.mean(previous == target)),
            "changed_fraction": float(np.mean(changed)),
            **({"changed_bit_accuracy": changed_bit_accuracy(pred, target, previous, num_bits)}
               if num_bits else {}),
            **({} if np.isnan(done_auroc) else {"done_auroc": done_auroc}),
            "done_rmse": float(np.sqrt(np.mean(np.square(done - label)))),
            "done_accuracy": float(np.mean((done >= 0.5) == (label > 0.5))),
            "num_windows": float(len(pred))}


def train_and_evaluate(config, workdir: str, episodes: Mapping[str, Sequence[data.Episode]], *,
                       parallel: Mapping[str, Any] | None = None) -> TrainState:
    """Trains to `config.num_steps` on episodes["train"] (resuming from `workdir`), evaluating on
    episodes["held_out"]; writes `workdir/eval/metrics.json` at the end.

    `parallel` (the launchers' `parallel` section): {"fsdp": bool, "fsdp_min_size": int,
    "num_devices": int}; FSDP and the device count change where the state lives and runs, never
    the numbers, so they are not part of the model's config. Data-parallel over every device of
    every process (`sharding`), or over the first `num_devices`."""
    m = config.model
    if m.get("margin_inputs", False):
        data.require_margins([ep for eps in episodes.values() for ep in eps])
    if m.get("generated_margin_flag", False):
        data.require_margins(episodes["train"], generated=True)
    if m.get("plan_frames", 0):
        fraction = config.input.get("plan_start_fraction", 0.0)
        episodes = {split: data.plan_episodes(eps, m.plan_frames, fraction)
                    for split, eps in episodes.items()}
    mesh = sharding.parallel_mesh(parallel)
    sharding.check_batch_size(config.input.batch_size, mesh)
    check_resume_compatible(os.path.join(workdir, "checkpoints"), config, FIELDS_ADDED_LATER)
    stats = None
    if m.control == "action" and config.input.get("normalize_actions", False):
        stats = load_or_write_action_stats(workdir, episodes["train"])
    model, tx = create_model(m, stats), make_optimizer(config)
    state, state_sharding = sharding.place_parallel_state(init_state(config, model, tx), mesh,
                                                          parallel)
    batch_fn = data.make_batch_fn(episodes["train"], batch_size=config.input.batch_size,
                                  num_frames=m.num_frames, seed=config.seed, control=m.control,
                                  pad_start=config.input.pad_start,
                                  stride=model.config.frame_stride)
    windows = data.fixed_windows(episodes["held_out"], num_windows=config.eval.num_windows,
                                 num_frames=m.num_frames, control=m.control, seed=config.seed,
                                 stride=model.config.frame_stride,
                                 # a plan's windows from its start (padded) are most of its own
                                 pad_start=bool(model.config.plan_frames))
    eval_step = make_eval_step(config, model)

    def eval_fn(state: TrainState) -> dict[str, float]:
        return evaluate(eval_step, sharding.host_local(state.params), windows,
                        config.eval.batch_size, m.num_bits)

    state = train_loop(state, make_step(config, model, tx, mesh, state_sharding),
                       lambda step: sharding.global_batch(batch_fn(step), mesh), workdir=workdir,
                       num_steps=config.num_steps, log_every_steps=config.log_every_steps,
                       checkpoint_every_steps=config.checkpoint_every_steps,
                       desc=f"world_model:{m.control}", eval_fn=eval_fn,
                       eval_every_steps=config.eval_every_steps,
                       checkpoint_meta=model_fingerprint(config))
    metrics = {**eval_fn(state), "step": int(state.step)}
    if sharding.is_primary():
        write_json(os.path.join(workdir, "eval", "metrics.json"), metrics)
        write_training_curves(os.path.join(sharding.process_dir(workdir), "metrics.jsonl"),
                              os.path.join(workdir, "curves.png"), WORLD_MODEL_PANELS,
                              title=f"{m.control} world model ({config.variant})",
                              baselines=WORLD_MODEL_BASELINES)
    return state


def restore_params(workdir: str, config) -> tuple[WorldModel, PyTree]:
    """(model, params) of the newest checkpoint in `workdir`, checked against `config.model`."""
    checkpoint_dir = os.path.join(workdir, "checkpoints")
    check_resume_compatible(checkpoint_dir, config, FIELDS_ADDED_LATER)
    model = create_model(config.model, read_action_stats(workdir))
    tx = make_optimizer(config)
    with Checkpointer(checkpoint_dir) as ckpt:
        state, _ = ckpt.restore(init_state(config, model, tx))
    return model, state.params
