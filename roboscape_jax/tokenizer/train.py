"""Trains the frame tokenizer, data-parallel over every JAX device, with an EMA of its parameters.

  state = train_and_evaluate(config, workdir, frames_source)   # config: the tokenizer section

The batch of step s is a fixed function of (seed, s), so a killed run resumes with the same numbers
(utils.training.train_loop). Every checkpoint carries the model config; resuming a workdir whose
checkpoint came from a different model config raises ValueError naming the field. The EMA
parameters are what evaluation, `restore_params` and the token cache use.

With `loss.adversarial_weight` > 0 the state also holds a patch discriminator and its optimizer
(`tokenizer/adversarial.py`), and each step updates the tokenizer and then the discriminator.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from roboscape_jax.tokenizer import adversarial
from roboscape_jax.tokenizer import evaluate as evaluation
from roboscape_jax.tokenizer.api import frames_to_model_input
from roboscape_jax.tokenizer.frames import FrameSource
from roboscape_jax.tokenizer.losses import load_lpips_params, tokenizer_loss
from roboscape_jax.tokenizer.model import FrameTokenizer, create_model, init_params
from roboscape_jax.types import PyTree
from roboscape_jax.utils import sharding
from roboscape_jax.utils.checkpoint import Checkpointer
from roboscape_jax.utils.curves import TOKENIZER_PANELS, write_training_curves
from roboscape_jax.utils.metrics import MetricWriter
from roboscape_jax.utils.training import TrainState, create_train_state, make_train_step, train_loop

# Model-config fields added after checkpoints were written: a checkpoint (or config) without one
# holds this value, so older checkpoints keep loading.
FIELDS_ADDED_LATER = {"reference_conditioning": False, "reference_copy_gate": False,
                      "stem_factor": 1}


class EmaTrainState(TrainState):
    """A TrainState plus an exponential moving average of the parameters, and the discriminator
    with its optimizer state when the adversarial loss is on (None, no leaves, when off: older
    checkpoints keep loading)."""

    ema_params: PyTree
    disc_params: PyTree = None
    disc_opt_state: PyTree = None


def adversarial_enabled(config) -> bool:
    """Whether the tokenizer config turns the adversarial loss on (`loss.adversarial_weight` >
    0)."""
    return float(config.loss.get("adversarial_weight", 0.0)) > 0.0


def discriminator_fingerprint(config) -> dict[str, Any] | None:
    """The discriminator section as stored in checkpoints; None when the adversarial loss is off."""
    if not adversarial_enabled(config):
        return None
    return json.loads(json.dumps(config.discriminator.to_dict(), sort_keys=True))


def ema_decay_at(step: jax.Array, decay: float) -> jax.Array:
    """min(decay, (1 + t) / (10 + t)): a short memory early on, so the EMA tracks a fresh model."""
    t = step.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + t) / (10.0 + t))


def model_fingerprint(config) -> dict[str, Any]:
    """The JSON form of `config.model` and its hash, stored in every checkpoint's meta."""
    model_config = json.loads(json.dumps(config.model.to_dict(), sort_keys=True))
    digest = hashlib.sha256(json.dumps(model_config, sort_keys=True).encode()).hexdigest()
    return {"model_config": model_config, "model_fingerprint": digest[:16]}


def check_resume_compatible(checkpoint_dir: str, config,
                            defaults: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Raises ValueError when `checkpoint_dir` holds a checkpoint of another model config;
    returns the checkpoint's meta (None: no checkpoint). `defaults`: values of fields added to
    the model config after a checkpoint was written (a field the checkpoint lacks counts as its
    default, so older checkpoints keep loading)."""
    if not os.path.isdir(checkpoint_dir):
        return None
    with Checkpointer(checkpoint_dir) as ckpt:
        if ckpt.latest_step() is None:
            return None
        _, meta = ckpt.restore(None)  # raw restore: no template, so shapes cannot clash
    stored, expected = meta.get("model_config"), model_fingerprint(config)["model_config"]
    if stored is None:
        raise ValueError(f"checkpoint in {checkpoint_dir} has no model_config; cannot resume")
    defaults = defaults or {}
    for field in sorted(set(stored) | set(expected)):
        was = stored.get(field, defaults.get(field))
        now = expected.get(field, defaults.get(field))
        if was != now:
            raise ValueError(
                f"cannot resume from {checkpoint_dir}: model.{field} is {now!r} "
                f"in the config but {was!r} in the checkpoint; use a new workdir")
    return meta


def check_discriminator_compatible(checkpoint_dir: str, meta: Mapping[str, Any] | None,
                                   config) -> None:
    """Raises ValueError when the tokenizer checkpoint (its `meta`, None: no checkpoint) was
    trained with the adversarial loss switched otherwise, or with another discriminator."""
    if meta is None:
        return
    was, now = meta.get("discriminator_config"), discriminator_fingerprint(config)
    if (was is None) != (now is None):
        raise ValueError(
            f"cannot resume from {checkpoint_dir}: the adversarial loss is "
            f"{'on' if now else 'off'} (loss.adversarial_weight) in the config but "
            f"{'on' if was else 'off'} in the checkpoint; use a new workdir")
    for field in sorted(set(was or {}) | set(now or {})):
        if was.get(field) != now.get(field):
            raise ValueError(
                f"cannot resume from {checkpoint_dir}: discriminator.{field} is "
                f"{now.get(field)!r} in the config but {was.get(field)!r} in the checkpoint; "
                "use a new workdir")


def make_optimizer(config) -> optax.GradientTransformation:
    o = config.optim
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, o.lr, o.warmup_steps, max(config.num_steps, o.warmup_steps + 1), end_value=0.1 * o.lr)
    return optax.chain(optax.clip_by_global_norm(o.grad_clip_norm),
                       optax.adamw(schedule, b1=o.b1, b2=o.b2, weight_decay=o.wd))


def make_discriminator_optimizer(config) -> optax.GradientTransformation:
    """Adam with VQGAN's (0.5, 0.9) betas at `discriminator.lr`, gradients clipped as the
    tokenizer's."""
    d = config.discriminator
    return optax.chain(optax.clip_by_global_norm(config.optim.grad_clip_norm),
                       optax.adam(d.lr, b1=d.b1, b2=d.b2))


def init_state(config, model: FrameTokenizer, tx: optax.GradientTransformation) -> EmaTrainState:
    rng, rng_init = jax.random.split(jax.random.PRNGKey(config.seed))
    params = init_params(model, rng_init, config.input.frame_height, config.input.frame_width)
    base = create_train_state(params, tx, rng)
    disc_params = disc_opt_state = None
    if adversarial_enabled(config):
        disc_params = adversarial.init_discriminator(
            adversarial.create_discriminator(config.discriminator), jax.random.fold_in(rng_init, 1),
            config.input.frame_height, config.input.frame_width)
        disc_opt_state = make_discriminator_optimizer(config).init(disc_params)
    return EmaTrainState(step=base.step, params=base.params, opt_state=base.opt_state,
                         rng=base.rng, ema_params=jax.tree.map(jnp.copy, params),
                         disc_params=disc_params, disc_opt_state=disc_opt_state)


def make_step(config, model: FrameTokenizer, tx, mesh, lpips_params: PyTree | None,
              state_sharding: PyTree | None = None):
    """`step(state, frames) -> (state, metrics)`, data-parallel over `mesh`; frames: uint8
    [B, H, W, 3], or for a reference-conditioned tokenizer {"frames", "references"} of that
    shape (`make_batch_fn`). The state is placed as `state_sharding` says (default replicated)."""
    jitted = make_jitted_step(config, model, tx, mesh, state_sharding)
    return lambda state, frames: jitted(state, frames, lpips_params)


def make_jitted_step(config, model: FrameTokenizer, tx, mesh,
                     state_sharding: PyTree | None = None):
    """The jitted `step(state, frames, lpips_params) -> (state, metrics)` of `make_step` (the
    LPIPS weights an argument, not a constant: benchmarks lower and cost it)."""

    def reconstruct(params, batch):
        x = frames_to_model_input(batch["frames"])
        first = batch.get("references")
        first = None if first is None else frames_to_model_input(first)
        reference = first if model.reference_conditioning else None
        recon, aux = model.apply(params, x, reference)
        if "previous" in batch:  # the temporal-stability loss's target: latents held fixed
            previous = frames_to_model_input(batch["previous"])
            z_prev, _ = model.apply(params, previous, reference, method=FrameTokenizer.encode)
            aux = {**aux, "previous": previous,
                   "previous_latents": jax.lax.stop_gradient(z_prev)}
        return x, first, recon, aux

    def loss_fn(params, batch, rng):
        del rng  # the tokenizer's loss is deterministic
        x, first, recon, aux = reconstruct(params, batch)
        return tokenizer_loss(recon, x, aux["latents"], aux["codes"], config.loss,
                              batch["lpips_params"], first, aux.get("previous"),
                              aux.get("previous_latents"))

    base_step = make_train_step(loss_fn, tx)
    gan_step = make_adversarial_step(config, reconstruct, tx) if adversarial_enabled(config) \
        else None

    def step(state: EmaTrainState, frames: jax.Array, lpips: PyTree | None):
        batch = dict(frames) if isinstance(frames, dict) else {"frames": frames}
        batch = {**batch, "lpips_params": lpips}
        if gan_step is not None:
            new, metrics = gan_step(state, batch)
        else:
            inner = TrainState(step=state.step, params=state.params, opt_state=state.opt_state,
                               rng=state.rng)
            inner, metrics = base_step(inner, batch)
            new = state.replace(step=inner.step, params=inner.params, opt_state=inner.opt_state,
                                rng=inner.rng)
        decay = ema_decay_at(state.step, config.ema_decay)
        ema = optax.incremental_update(new.params, state.ema_params, 1.0 - decay)
        return new.replace(ema_params=ema), metrics

    return sharding.data_parallel_jit(step, mesh, num_extra_args=1,
                                      state_sharding=state_sharding)


def make_adversarial_step(config, reconstruct, tx):
    """(state, batch) -> (state with tokenizer and discriminator updated, metrics).

    The tokenizer minimises its losses plus lambda x the generator hinge loss against the current
    discriminator, lambda = `adversarial_weight_at(step)`, times (with `loss.adversarial_adaptive`)
    ||d L_rec / d recon|| / ||d L_G / d recon||: VQGAN's adaptive weight (which balances the two
    gradients at the decoder's last layer) taken at the reconstruction itself, so the GAN's pull
    stays a fixed share of the reconstruction losses' whatever their scale. One forward and one
    backward pass of the tokenizer (the two gradients meet at the reconstruction). Then the
    discriminator takes one hinge-loss step on the batch's real frames against the
    reconstructions just made (none before `adversarial_start_step`).
    `reconstruct(params, batch) -> (target, first, recon, aux)` in [-1, 1]."""
    disc = adversarial.create_discriminator(config.discriminator)
    disc_tx = make_discriminator_optimizer(config)
    start = int(config.loss.get("adversarial_start_step", 0))
    adaptive = bool(config.loss.get("adversarial_adaptive", True))

    def step(state: EmaTrainState, batch):
        def forward(params):
            x, first, recon, aux = reconstruct(params, batch)
            return (recon, aux["latents"], aux["codes"]), (x, first, aux.get("previous"),
                                                           aux.get("previous_latents"))

        (recon, z, q), vjp_fn, (x, first, prev, z_prev) = jax.vjp(forward, state.params,
                                                                  has_aux=True)
        (rec_loss, metrics), rec_grads = jax.value_and_grad(
            lambda r, z, q: tokenizer_loss(r, x, z, q, config.loss, batch["lpips_params"], first,
                                           prev, z_prev),
            argnums=(0, 1, 2), has_aux=True)(recon, z, q)
        g_adv, adv_grad = jax.value_and_grad(
            lambda r: adversarial.generator_hinge_loss(disc.apply(state.disc_params, r)))(recon)
        weight = adversarial.adversarial_weight_at(state.step, config.loss.adversarial_weight,
                                                   start)
        ratio = jnp.clip(optax.global_norm(rec_grads[0]) / (optax.global_norm(adv_grad) + 1e-4),
                         0.0, 1e4)
        weight = weight * ratio if adaptive else weight
        (grads,) = vjp_fn((rec_grads[0] + weight * adv_grad, rec_grads[1], rec_grads[2]))
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)

        def disc_loss_fn(disc_params):
            real = disc.apply(disc_params, x)
            fake = disc.apply(disc_params, jax.lax.stop_gradient(recon))
            return adversarial.discriminator_hinge_loss(real, fake), (real, fake)

        (d_loss, (real, fake)), d_grads = jax.value_and_grad(disc_loss_fn, has_aux=True)(
            state.disc_params)
        active = (state.step >= start).astype(jnp.float32)
        d_grads = jax.tree.map(lambda g: g * active, d_grads)  # zero grads: Adam moves nothing
        d_updates, disc_opt_state = disc_tx.update(d_grads, state.disc_opt_state,
                                                   state.disc_params)
        disc_params = optax.apply_updates(state.disc_params, d_updates)
        metrics = {**metrics, "loss": rec_loss + weight * g_adv,
                   "grad_norm": optax.global_norm(grads), "adversarial_generator": g_adv,
                   "adversarial_weight": weight, "adversarial_gradient_ratio": ratio,
                   "discriminator_loss": d_loss, "discriminator_real": jnp.mean(real),
                   "discriminator_fake": jnp.mean(fake)}
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                             disc_params=disc_params, disc_opt_state=disc_opt_state), metrics

    return step


# The five channel orders other than RGB itself: each is a hue rotation or reflection.
_CHANNEL_ORDERS = np.array([[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])


def colour_orders(num: int, fraction: float, rng: np.random.Generator) -> np.ndarray | None:
    """int [num, 3] channel orders: about `fraction` of them one of the five non-identity orders,
    drawn from `rng`, the rest RGB itself; None when `fraction` <= 0 (nothing drawn)."""
    if fraction <= 0.0:
        return None
    swap = rng.random(num) < fraction
    return np.where(swap[:, None], _CHANNEL_ORDERS[rng.integers(0, 5, num)], np.arange(3)[None])


def reorder_channels(x: np.ndarray | None, orders: np.ndarray | None) -> np.ndarray | None:
    """Each frame of x [B, H, W, 3] with its channels in `orders` [B, 3] (None: as it is)."""
    if x is None or orders is None:
        return x
    return np.take_along_axis(x, orders[:, None, None, :], axis=-1)


def permute_colours(frames: np.ndarray, references: np.ndarray | None, fraction: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Reorders the RGB channels of about `fraction` of the frames, each by one of the five
    non-identity orders, drawn from `rng`; a frame's episode-first reference gets the same order
    (the motion mask compares the two).

    The `tiny` data shows the tokenizer four in-domain scenes; its out-of-domain split holds
    objects it never saw. Frames whose colours are swapped teach codes that do not depend on the
    few colours of the training scenes (uint8 [B, H, W, 3] in, same out)."""
    orders = colour_orders(len(frames), fraction, rng)
    return reorder_channels(frames, orders), reorder_channels(references, orders)


def make_batch_fn(config, source: FrameSource, *, references: bool = False,
                  previous: bool = False):
    """batch_fn(step) -> uint8 [B, H, W, 3]: train frames drawn from a generator seeded by step;
    with `references` or `previous`, a dict {"frames", and "references": each frame's
    episode-first frame, "previous": each frame's predecessor}.
    `input.colour_permute_fraction` of them have their RGB channels reordered, each frame's
    companions the same way (`colour_orders`)."""
    train_indices = source.split_indices("train")
    fraction = float(config.input.get("colour_permute_fraction", 0.0))

    def batch_fn(step: int):
        rng = np.random.default_rng([config.seed, step])
        indices = np.sort(rng.choice(train_indices, config.input.batch_size))
        orders = colour_orders(len(indices), fraction, rng)  # one order per frame, shared with
        batch = {"frames": reorder_channels(source.get_batch(indices), orders)}  # its companions
        if references:
            batch["references"] = reorder_channels(source.get_references(indices), orders)
        if previous:
            batch["previous"] = reorder_channels(source.get_previous(indices), orders)
        return batch if references or previous else batch["frames"]

    return batch_fn


def held_out_frames(source: FrameSource, num_frames: int) -> np.ndarray:
    """The first `num_frames` held-out frames (a fixed set, so evaluations compare)."""
    return source.get_batch(source.split_indices("held_out")[:num_frames])


def held_out_references(source: FrameSource, num_frames: int) -> np.ndarray:
    """The episode-first frames of `held_out_frames`."""
    return source.get_references(source.split_indices("held_out")[:num_frames])


def temporal_enabled(config) -> bool:
    """Whether the tokenizer config turns the temporal-stability loss on (`loss.temporal_weight`
    > 0): training then also reads each frame's previous frame."""
    return float(config.loss.get("temporal_weight", 0.0)) > 0.0


def needs_first_frames(config, model: FrameTokenizer) -> bool:
    """Whether training reads each frame's episode-first frame: a reference-conditioned model,
    or the motion-weighted L1 (`loss.moving_weight`)."""
    return model.reference_conditioning or bool(config.loss.get("moving_weight", 0.0))


def check_reference_source(model: FrameTokenizer, source: FrameSource, config=None) -> None:
    """A reference-conditioned tokenizer (or a motion-weighted loss) needs a source that knows
    its episodes."""
    if getattr(source, "has_references", False):
        return
    needed = model.reference_conditioning if config is None else needs_first_frames(config,
                                                                                     model)
    reads = [what for what, on in (
        ("each frame's episode-first frame (model.reference_conditioning or "
         "loss.moving_weight)", needed),
        ("each frame's previous frame (loss.temporal_weight > 0)",
         config is not None and temporal_enabled(config))) if on]
    if reads:
        raise ValueError(f"the tokenizer reads {' and '.join(reads)} but its frame source has no "
                         "episode boundaries: build it with episode lengths "
                         "(tokenizer.frames.SplitFrameSource)")


def train_and_evaluate(config, workdir: str, frames_source: FrameSource, *,
                       parallel: Mapping[str, Any] | None = None) -> EmaTrainState:
    """Trains to `config.num_steps` (resuming from `workdir`), then writes `workdir/eval/`.
    `parallel`: {"fsdp": bool, "fsdp_min_size": int, "num_devices": int}
    (`sharding.parallel_mesh`, `sharding.place_parallel_state`)."""
    expected = (config.input.frame_height, config.input.frame_width, 3)
    if tuple(frames_source.frame_shape) != expected:
        raise ValueError(f"frames are {frames_source.frame_shape}, the config expects {expected}")
    mesh = sharding.parallel_mesh(parallel)
    sharding.check_batch_size(config.input.batch_size, mesh)
    checkpoint_dir = os.path.join(workdir, "checkpoints")
    check_discriminator_compatible(
        checkpoint_dir, check_resume_compatible(checkpoint_dir, config, FIELDS_ADDED_LATER),
        config)
    model, tx = create_model(config.model), make_optimizer(config)
    check_reference_source(model, frames_source, config)
    use_lpips = config.loss.lpips_weight > 0 or config.eval.lpips
    lpips_params = load_lpips_params() if use_lpips else None
    state, state_sharding = sharding.place_parallel_state(init_state(config, model, tx), mesh,
                                                          parallel)
    eval_frames = held_out_frames(frames_source, config.eval.num_frames)
    eval_first = (held_out_references(frames_source, config.eval.num_frames)
                  if getattr(frames_source, "has_references", False) else None)
    eval_references = eval_first if model.reference_conditioning else None
    images = MetricWriter(os.path.join(sharding.process_dir(workdir), "images"))

    def eval_fn(state: EmaTrainState) -> dict[str, float]:
        metrics, recons = evaluation.evaluate(
            model, sharding.host_local(state.ema_params), eval_frames, lpips_params=lpips_params,
            batch_size=config.eval.batch_size, num_views=config.input.num_views,
            references=eval_references, first_frames=eval_first)
        pick = evaluation.grid_indices(len(eval_frames), config.eval.grid_frames)
        grid = evaluation.reconstruction_grid(eval_frames[pick], recons[pick])
        images.write_images(int(state.step), {"held_out/originals_over_reconstructions": grid})
        return metrics

    batch_fn = make_batch_fn(config, frames_source,
                             references=needs_first_frames(config, model),
                             previous=temporal_enabled(config))
    state = train_loop(state, make_step(config, model, tx, mesh, lpips_params, state_sharding),
                       lambda step: sharding.global_batch(batch_fn(step), mesh), workdir=workdir,
                       num_steps=config.num_steps, log_every_steps=config.log_every_steps,
                       checkpoint_every_steps=config.checkpoint_every_steps, desc="tokenizer",
                       eval_fn=eval_fn, eval_every_steps=config.eval_every_steps,
                       checkpoint_meta={**model_fingerprint(config),
                                        "discriminator_config": discriminator_fingerprint(config)})
    images.close()
    ema_params = sharding.host_local(state.ema_params)  # a collective: every process joins
    if sharding.is_primary():
        evaluate_held_out(config, model, ema_params, frames_source,
                          os.path.join(workdir, "eval"), lpips_params, step=int(state.step))
        write_training_curves(os.path.join(sharding.process_dir(workdir), "metrics.jsonl"),
                              os.path.join(workdir, "curves.png"), TOKENIZER_PANELS,
                              title=f"tokenizer ({config.variant})")
    return state


def evaluate_held_out(config, model: FrameTokenizer, params: PyTree, frames_source: FrameSource,
                      out_dir: str, lpips_params: PyTree | None, *, step: int,
                      max_frames: int = 4096) -> dict[str, float]:
    """Scores up to `max_frames` held-out frames; writes `out_dir/{metrics.json,
    reconstructions.png}` and returns the metrics."""
    check_reference_source(model, frames_source)
    frames = held_out_frames(frames_source, max_frames)
    first = (held_out_references(frames_source, max_frames)
             if getattr(frames_source, "has_references", False) else None)
    metrics, recons = evaluation.evaluate(model, params, frames, lpips_params=lpips_params,
                                          batch_size=config.eval.batch_size,
                                          num_views=config.input.num_views,
                                          references=first if model.reference_conditioning
                                          else None, first_frames=first)
    metrics["step"] = step
    pick = evaluation.grid_indices(len(frames), config.eval.grid_frames)
    evaluation.write_report(out_dir, metrics,
                            evaluation.reconstruction_grid(frames[pick], recons[pick]))
    return metrics


def restore_params(workdir: str, config, *, use_ema: bool = True) -> tuple[FrameTokenizer, PyTree]:
    """(model, params) of the newest checkpoint in `workdir`, checked against `config.model`.
    Whether it was trained with the adversarial loss does not matter here (its discriminator is
    read as stored and dropped), so later stages need not repeat the training's loss flags."""
    checkpoint_dir = os.path.join(workdir, "checkpoints")
    meta = check_resume_compatible(checkpoint_dir, config, FIELDS_ADDED_LATER) or {}
    template = copy.deepcopy(config)
    stored = meta.get("discriminator_config")
    if stored:
        template.loss.adversarial_weight = 1.0
        template.discriminator.update(stored)
    elif adversarial_enabled(template):
        template.loss.adversarial_weight = 0.0
    model, tx = create_model(config.model), make_optimizer(config)
    with Checkpointer(checkpoint_dir) as ckpt:
        state, _ = ckpt.restore(init_state(template, model, tx))
    return model, state.ema_params if use_ema else state.params
