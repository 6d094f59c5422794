"""Tokenizer training: a 2-step debug run, resume refusal on another model config, data
parallelism, and the token cache."""

import itertools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs.tokenizer import tokenizer_config
from roboscape_jax.tokenizer import api, train
from roboscape_jax.tokenizer.frames import ArrayFrameSource, synthetic_frames
from roboscape_jax.tokenizer.losses import load_lpips_params, tokenizer_loss
from roboscape_jax.tokenizer.tokenize import (
    ArrayEpisodeSource,
    frame_margins,
    generated_margins,
    load_tokens,
    tokenize_episodes,
)
from roboscape_jax.utils.metrics import read_jsonl
from tests.conftest import REPO_ROOT

# Run in a subprocess with 4 fake CPU devices: the first step's loss on the debug config.
_FOUR_DEVICES = """
import jax
from experiments.configs.tokenizer import tokenizer_config
from roboscape_jax.tokenizer import train
from roboscape_jax.tokenizer.frames import ArrayFrameSource, synthetic_frames
from roboscape_jax.utils import sharding
config = tokenizer_config("debug")
source = ArrayFrameSource(synthetic_frames(40), 0.2)
mesh = sharding.data_mesh()
model, tx = train.create_model(config.model), train.make_optimizer(config)
state = sharding.replicate(train.init_state(config, model, tx), mesh)
batch = sharding.shard_batch(train.make_batch_fn(config, source)(0), mesh)
state, metrics = train.make_step(config, model, tx, mesh, None)(state, batch)
print(len(jax.devices()), len(batch.sharding.device_set), repr(float(metrics["loss"])))
"""


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("tokenizer_debug"))
    config = tokenizer_config("debug")
    source = ArrayFrameSource(synthetic_frames(40), 0.2)
    state = train.train_and_evaluate(config, workdir, source)
    return config, workdir, source, state


def test_debug_run_checkpoints_logs_and_evaluates(debug_run):
    config, workdir, _, state = debug_run
    assert int(state.step) == 2
    assert os.listdir(os.path.join(workdir, "checkpoints")) == ["2"]
    rows = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    for name in ("l1", "l2", "commitment", "per_sample_entropy", "codebook_entropy",
                 "entropy_loss", "psnr", "grad_norm"):
        assert np.isfinite(rows[0][name]), name
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
        metrics = json.load(f)
    assert {"psnr", "ssim", "code_usage", "code_perplexity", "subcode0_usage"} <= set(metrics)
    assert os.path.getsize(os.path.join(workdir, "eval", "reconstructions.png")) > 0
    assert os.path.getsize(os.path.join(workdir, "curves.png")) > 0
    model, params = train.restore_params(workdir, config)
    np.testing.assert_array_equal(params["params"]["decoder"]["Conv_0"]["kernel"],
                                  state.ema_params["params"]["decoder"]["Conv_0"]["kernel"])


def test_resume_with_another_model_config_names_the_field(debug_run):
    config, workdir, source, _ = debug_run
    other = tokenizer_config("debug")
    other.model.num_bits = 8
    with pytest.raises(ValueError, match=r"model\.num_bits is 8 in the config but 6"):
        train.train_and_evaluate(other, workdir, source)
    with pytest.raises(ValueError, match=r"model\.num_bits"):
        train.restore_params(workdir, other)
    resumed = train.train_and_evaluate(tokenizer_config("debug"), workdir, source)  # same config
    assert int(resumed.step) == 2


def test_model_fields_added_later_count_as_their_defaults(debug_run):
    config, workdir, _, _ = debug_run
    # every model field the first checkpoints lacked has a default there, so they keep loading
    first_fields = {"channels", "channel_mults", "num_res_blocks", "num_bits", "num_factors"}
    assert set(config.model) - first_fields == set(train.FIELDS_ADDED_LATER)
    older = tokenizer_config("debug")  # a config from before these fields existed
    for field in train.FIELDS_ADDED_LATER:
        del older.model[field]
    train.restore_params(workdir, older)  # the checkpoint has them at their defaults: loads
    older.model.num_bits = 8
    with pytest.raises(ValueError, match=r"model\.num_bits"):
        train.restore_params(workdir, older)


def test_four_devices_match_one_device(debug_run):
    _, workdir, _, _ = debug_run
    one_device_loss = read_jsonl(os.path.join(workdir, "metrics.jsonl"))[0]["loss"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    out = subprocess.run([sys.executable, "-c", _FOUR_DEVICES], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    num_devices, num_shards, loss = out.stdout.split()[-3:]
    assert (num_devices, num_shards) == ("4", "4")
    np.testing.assert_allclose(float(loss), one_device_loss, rtol=1e-5)


def test_loss_with_lpips_returns_every_term():
    config = tokenizer_config("debug").loss
    config.lpips_weight = 0.5
    x = jnp.asarray(synthetic_frames(2, 64, 64), jnp.float32) / 127.5 - 1.0
    z = jnp.ones((2, 8, 8, 6))
    lpips_params = load_lpips_params()
    loss_fn = jax.jit(lambda recon, lp: tokenizer_loss(recon, x, z, jnp.sign(z), config, lp))
    _, same = loss_fn(x, lpips_params)
    np.testing.assert_allclose(same["lpips"], 0.0, atol=1e-6)
    _, noisy = loss_fn(jnp.clip(x + 0.3, -1, 1), lpips_params)
    assert float(noisy["lpips"]) > 0.01
    assert set(noisy) >= {"l1", "l2", "lpips", "commitment", "entropy_loss", "psnr"}
    with pytest.raises(ValueError, match="lpips_params"):
        tokenizer_loss(x, x, z, z, config, None)


def test_token_cache_is_written_once_and_refuses_another_tokenizer(debug_run, tmp_path):
    config, workdir, _, state = debug_run
    model, params = train.restore_params(workdir, config)
    frames = synthetic_frames(11)
    episodes = ArrayEpisodeSource({"ep_0": frames[:5], "ep_1": frames[5:]})
    tokenizer_id = train.model_fingerprint(config)
    cache = str(tmp_path / "tokens")
    assert tokenize_episodes(model, params, episodes, cache, tokenizer_id=tokenizer_id,
                             batch_size=8) == {"written": 2, "skipped": 0}
    tokens = load_tokens(cache, "ep_1")
    assert tokens.shape == (6, 16, 8) and tokens.dtype == np.int32
    np.testing.assert_array_equal(tokens, api.encode(params, frames[5:], model=model))
    assert tokenize_episodes(model, params, episodes, cache, tokenizer_id=tokenizer_id,
                             batch_size=8) == {"written": 0, "skipped": 2}
    with pytest.raises(ValueError, match="another tokenizer"):
        tokenize_episodes(model, params, episodes, cache, tokenizer_id={"other": 1})
    with pytest.raises(ValueError, match="another tokenizer"):  # hysteresis codes are others
        tokenize_episodes(model, params, episodes, cache, tokenizer_id=tokenizer_id,
                          hysteresis=0.5)
    sticky_cache = str(tmp_path / "sticky")
    tokenize_episodes(model, params, episodes, sticky_cache, tokenizer_id=tokenizer_id,
                      batch_size=8, hysteresis=0.5)
    sticky = load_tokens(sticky_cache, "ep_1")
    np.testing.assert_array_equal(sticky[0], tokens[0])  # the first frame is quantized plainly
    bit_flips = lambda x: np.sum(np.diff((x[..., None] >> np.arange(model.num_bits)) & 1, axis=0) != 0)  # noqa: E731,E501
    assert bit_flips(sticky) <= bit_flips(tokens)  # a kept bit flips later at most once
    # bit margins: latent x code sign; |z| for plain codes, > -hysteresis for sticky ones
    with np.load(f"{cache}/ep_1.npz") as npz, np.load(f"{sticky_cache}/ep_1.npz") as sticky_npz:
        margins, sticky_margins = npz["margins"], sticky_npz["margins"]
    latents = np.asarray(api.encode_latents(params, frames[5:], model=model))
    assert margins.shape == (6, 16, 8, model.num_bits) and margins.dtype == np.float16
    np.testing.assert_allclose(margins, np.abs(latents), rtol=1e-2, atol=1e-3)
    assert sticky_margins.min() >= -0.5 - 1e-3 and (sticky_margins < 0).any()
    np.testing.assert_allclose(frame_margins(model, params, frames[5:], tokens), np.abs(latents),
                               rtol=1e-5, atol=1e-5)
    # the decoded frames' margins, for generated_margin_flag world models: a cache of its own
    with pytest.raises(ValueError, match="another tokenizer"):
        tokenize_episodes(model, params, episodes, cache, tokenizer_id=tokenizer_id,
                          with_generated_margins=True)
    decoded_cache = str(tmp_path / "decoded")
    tokenize_episodes(model, params, episodes, decoded_cache, tokenizer_id=tokenizer_id,
                      batch_size=4, with_generated_margins=True)
    with np.load(f"{decoded_cache}/ep_1.npz") as npz:
        np.testing.assert_array_equal(npz["tokens"], tokens)
        decoded = npz["generated_margins"]
    assert decoded.shape == margins.shape and decoded.dtype == np.float16
    np.testing.assert_allclose(decoded, generated_margins(model, params, tokens), rtol=1e-2,
                               atol=1e-2)


def test_launcher_debug_smoke_run(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "experiments.train_tokenizer",
         "--config=experiments/configs/tokenizer_run.py:debug", f"--workdir={tmp_path}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("config.json", "run_info.json", "metrics.jsonl", "eval/metrics.json"):
        assert os.path.exists(tmp_path / name), name


def test_colour_permutation_reorders_channels_of_frame_and_reference_alike():
    from roboscape_jax.tokenizer.train import permute_colours

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (64, 4, 2, 3), dtype=np.uint8)
    refs = rng.integers(0, 256, (64, 4, 2, 3), dtype=np.uint8)
    same, same_refs = permute_colours(frames, refs, 0.0, np.random.default_rng(1))
    assert same is frames and same_refs is refs  # off: untouched, no random draws
    out, out_refs = permute_colours(frames, refs, 1.0, np.random.default_rng(1))
    assert out.shape == frames.shape and out.dtype == np.uint8
    orders = set()
    for i in range(len(frames)):
        order = next(p for p in itertools.permutations(range(3))
                     if np.array_equal(out[i], frames[i][..., list(p)]))
        assert order != (0, 1, 2)  # every frame swapped at fraction 1
        np.testing.assert_array_equal(out_refs[i], refs[i][..., list(order)])
        orders.add(order)
    assert len(orders) == 5  # all five non-identity orders drawn over 64 frames
    again, _ = permute_colours(frames, refs, 1.0, np.random.default_rng(1))
    np.testing.assert_array_equal(again, out)  # deterministic per generator
    half, _ = permute_colours(frames, None, 0.5, np.random.default_rng(2))
    kept = np.mean([np.array_equal(half[i], frames[i]) for i in range(len(frames))])
    assert 0.25 < kept < 0.75
