"""The tokenizer's optional adversarial loss: hinge losses, the patch discriminator, a debug run
with it on (discriminator trained from its start step, checkpoint and resume), and the refusal to
resume a checkpoint trained with the loss off."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs.tokenizer import tokenizer_config
from roboscape_jax.tokenizer import adversarial, train
from roboscape_jax.tokenizer.frames import ArrayFrameSource, synthetic_frames
from roboscape_jax.utils import sharding
from roboscape_jax.utils.metrics import read_jsonl


def _gan_config(start_step: int = 1):
    config = tokenizer_config("debug")
    config.loss.adversarial_weight = 0.1
    config.loss.adversarial_start_step = start_step
    config.discriminator.update(channels=8, num_layers=2)
    config.num_steps = 3
    config.checkpoint_every_steps = 3
    config.eval_every_steps = 0
    return config


def test_hinge_losses_and_weight_schedule():
    real, fake = jnp.array([2.0, 0.5]), jnp.array([-2.0, 0.0])
    # relu(1 - 2) + relu(1 - 0.5) = 0.5 -> mean 0.25; relu(1 - 2) + relu(1 + 0) = 1 -> mean 0.5
    np.testing.assert_allclose(adversarial.discriminator_hinge_loss(real, fake), 0.75)
    np.testing.assert_allclose(adversarial.generator_hinge_loss(fake), 1.0)
    weights = [float(adversarial.adversarial_weight_at(jnp.int32(s), 0.1, 2)) for s in range(4)]
    np.testing.assert_allclose(weights, [0.0, 0.0, 0.1, 0.1])


def test_patch_discriminator_shapes_and_bad_input():
    disc = adversarial.PatchDiscriminator(channels=8, num_layers=3)
    params = adversarial.init_discriminator(disc, jax.random.PRNGKey(0), 128, 64)
    assert disc.apply(params, jnp.zeros((2, 128, 64, 3))).shape == (2, 16, 8)
    with pytest.raises(ValueError, match=r"frames \[B, H, W, 3\], got \(2, 128, 64\)"):
        disc.apply(params, jnp.zeros((2, 128, 64)))


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("tokenizer_gan"))
    config = _gan_config()
    source = ArrayFrameSource(synthetic_frames(40), 0.2)
    initial = train.init_state(config, train.create_model(config.model),
                               train.make_optimizer(config))
    state = train.train_and_evaluate(config, workdir, source)
    return config, workdir, source, initial, state


def test_debug_run_trains_the_discriminator_from_its_start_step(gan_run):
    _, workdir, _, initial, state = gan_run
    rows = [r for r in read_jsonl(os.path.join(workdir, "metrics.jsonl")) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[0]["adversarial_weight"] == 0.0
    for r in rows[1:]:  # adaptive: 0.1 x the reconstruction / adversarial gradient-norm ratio
        assert r["adversarial_gradient_ratio"] > 0.0
        assert r["adversarial_weight"] == pytest.approx(0.1 * r["adversarial_gradient_ratio"])
    for name in ("discriminator_loss", "discriminator_real", "discriminator_fake",
                 "adversarial_generator"):
        assert all(np.isfinite(r[name]) for r in rows), name
    # hinge loss of an untrained discriminator: about 2 (both terms near relu(1 + 0))
    assert 1.0 < rows[0]["discriminator_loss"] < 3.0
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), initial.disc_params,
                         state.disc_params)
    assert max(jax.tree.leaves(moved)) > 0.0


def _one_step(config):
    model, tx = train.create_model(config.model), train.make_optimizer(config)
    mesh = sharding.data_mesh()
    state = sharding.replicate(train.init_state(config, model, tx), mesh)
    before = jax.tree.map(np.asarray, state)
    batch = sharding.shard_batch(
        train.make_batch_fn(config, ArrayFrameSource(synthetic_frames(16), 0.2))(0), mesh)
    state, metrics = train.make_step(config, model, tx, mesh, None)(state, batch)
    return before, jax.tree.map(np.asarray, state), metrics


def test_before_the_start_step_the_tokenizer_steps_as_without_the_loss():
    before, gan, metrics = _one_step(_gan_config(start_step=5))
    assert float(metrics["adversarial_weight"]) == 0.0
    jax.tree.map(np.testing.assert_array_equal, before.disc_params, gan.disc_params)
    plain_config = _gan_config()
    plain_config.loss.adversarial_weight = 0.0
    _, plain, plain_metrics = _one_step(plain_config)
    assert plain.disc_params is None
    # the GAN step's single backward pass (joined at the reconstruction) = the plain step's
    np.testing.assert_allclose(float(metrics["loss"]), float(plain_metrics["loss"]), rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 gan.params, plain.params)


def test_fixed_weight_without_the_adaptive_scaling():
    config = _gan_config(start_step=0)
    config.loss.adversarial_adaptive = False
    _, _, metrics = _one_step(config)
    np.testing.assert_allclose(float(metrics["adversarial_weight"]), 0.1)


def test_resume_keeps_the_discriminator_and_refuses_the_loss_switched_off(gan_run):
    config, workdir, source, _, state = gan_run
    resumed = train.train_and_evaluate(config, workdir, source)  # at num_steps: restores only
    assert int(resumed.step) == 3
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state.disc_params),
                 jax.tree.map(np.asarray, resumed.disc_params))
    off = _gan_config()
    off.loss.adversarial_weight = 0.0
    with pytest.raises(ValueError, match=r"adversarial loss is off .* but on in the checkpoint"):
        train.train_and_evaluate(off, workdir, source)
    other = _gan_config()
    other.discriminator.channels = 16
    with pytest.raises(ValueError, match=r"discriminator\.channels is 16 in the config but 8"):
        train.train_and_evaluate(other, workdir, source)


def test_later_stages_restore_the_tokenizer_without_the_loss_flags(gan_run):
    _, workdir, _, _, state = gan_run
    _, params = train.restore_params(workdir, tokenizer_config("debug"))  # the loss off
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state.ema_params),
                 jax.tree.map(np.asarray, params))
