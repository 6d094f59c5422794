"""World-model training: data windows, a 2-step debug run through the launcher's data path, exact
resume, refusal to resume another model config, and a text-model step."""

import json
import os

import jax
import numpy as np
import pytest

from experiments.configs.world_model import world_model_config
from experiments.configs.world_model_run import get_config
from experiments.train_world_model import load_episodes
from roboscape_jax.utils import sharding
from roboscape_jax.utils.metrics import read_jsonl
from roboscape_jax.world_model import data, train
from roboscape_jax.world_model.model import WorldModelConfig


def test_windows_pad_the_start_and_shift_actions():
    episode = data.Episode(np.arange(4)[:, None, None] * np.ones((1, 2, 1), np.int32),
                           np.arange(4)[:, None] * np.ones((1, 7), np.float32),
                           np.array([0, 0, 1, 1], np.float32))
    episodes, starts = data.window_index([episode], 3)
    np.testing.assert_array_equal(starts, [-1, 0, 1])
    window = data.make_window(episode, -1, 3)
    np.testing.assert_array_equal(window["tokens"][:, 0, 0], [0, 0, 1])
    np.testing.assert_array_equal(window["actions"][:, 0], [0, 0, 0])  # a_0 led into frame 1
    np.testing.assert_array_equal(data.make_window(episode, 1, 3)["actions"][:, 0], [0, 1, 2])
    batch_fn = data.make_batch_fn([episode], batch_size=4, num_frames=3, seed=0)
    np.testing.assert_array_equal(batch_fn(7)["tokens"], batch_fn(7)["tokens"])
    assert batch_fn(0)["tokens"].shape == (4, 3, 2, 1)


def test_generated_margins_are_cached_windowed_and_mixed_in_as_a_recent_suffix(tmp_path):
    """The decoded frames' margins travel from the cache file to the batch; training swaps them
    in for the g most recent context frames of each window and flags those frames."""
    t, shape = 6, (6, 2, 1, 3)
    real = np.ones(shape, np.float16)
    np.savez(tmp_path / "ep.npz", tokens=np.zeros((t, 2, 1), np.int32),
             actions=np.zeros((t, 7), np.float32), done=np.zeros(t, np.float32), margins=real,
             generated_margins=-real)
    (episode,) = data.load_token_cache(str(tmp_path))
    np.testing.assert_array_equal(episode.generated_margins, -real)
    data.require_margins([episode], generated=True)
    with pytest.raises(ValueError, match="generated_margins=True"):
        data.require_margins([episode._replace(generated_margins=None)], generated=True)
    batch = data.make_batch_fn([episode], batch_size=64, num_frames=4, seed=0)(0)
    assert batch["generated_margins"].shape == (64, 4, 2, 1, 3)
    margins, generated = train.mix_generated_margins(jax.random.PRNGKey(0), batch)
    generated = np.asarray(generated)
    assert generated.shape == (64, 4) and generated[:, -1].all()  # the last frame's: unread
    np.testing.assert_array_equal(np.diff(generated.astype(int), axis=1) >= 0, True)  # suffix
    assert set(generated.sum(1)) == {1, 2, 3, 4}  # 0..3 generated context frames
    np.testing.assert_array_equal(np.asarray(margins)[..., 0, 0, 0], np.where(generated, -1, 1))
    with pytest.raises(ValueError, match="generated_margins"):
        train.mix_generated_margins(jax.random.PRNGKey(0), {"margins": batch["margins"]})


def test_strided_windows_cover_every_offset_and_pad_by_whole_strides():
    """The text model's coarse plan: frames `stride` apart, starts at every offset, padding
    repeats frame 0 up to (T - 2) * stride frames before the episode."""
    episode = data.Episode(np.arange(10)[:, None, None] * np.ones((1, 2, 1), np.int32),
                           np.zeros((10, 7), np.float32), (np.arange(10) >= 8).astype(np.float32))
    _, starts = data.window_index([episode], 3, stride=3)
    np.testing.assert_array_equal(starts, np.arange(-3, 4))  # last window: 3, 6, 9
    np.testing.assert_array_equal(data.make_window(episode, -2, 3, 3)["tokens"][:, 0, 0],
                                  [0, 1, 4])
    last = data.make_window(episode, 3, 3, 3)
    np.testing.assert_array_equal(last["tokens"][:, 0, 0], [3, 6, 9])
    np.testing.assert_array_equal(last["done"], [0, 0, 1])
    _, unpadded = data.window_index([episode], 3, pad_start=False, stride=3)
    np.testing.assert_array_equal(unpadded, np.arange(0, 4))
    with pytest.raises(ValueError, match="3 frames 5 apart"):
        data.window_index([episode], 3, pad_start=False, stride=5)
    with pytest.raises(ValueError, match="frame_stride"):
        WorldModelConfig(control="action", frame_stride=2)


def test_keyframe_plans_run_from_each_start_to_the_episode_end():
    """A plan_frames text model's episodes: K + 1 keyframes from a start to the last frame,
    starts up to `start_fraction` of the episode, none leaving fewer than K frames."""
    episode = data.Episode(np.arange(10)[:, None, None] * np.ones((1, 2, 1), np.int32),
                           np.ones((10, 7), np.float32), (np.arange(10) >= 8).astype(np.float32),
                           margins=np.arange(10, dtype=np.float16)[:, None, None, None]
                           * np.ones((1, 2, 1, 3), np.float16))
    plans = data.plan_episodes([episode], 3, start_fraction=0.5)
    assert len(plans) == 5  # starts 0..4 (int(0.5 * 9))
    np.testing.assert_array_equal(plans[0].tokens[:, 0, 0], [0, 3, 6, 9])
    np.testing.assert_array_equal(plans[0].done, [0, 0, 0, 1])
    np.testing.assert_array_equal(plans[4].tokens[:, 0, 0], [4, 6, 7, 9])  # round(6.33, 7.67)
    np.testing.assert_array_equal(plans[4].margins[:, 0, 0, 0], [4, 6, 7, 9])
    assert not plans[0].actions.any() and plans[0].actions.shape == (4, 7)
    assert len(data.plan_episodes([episode], 3)) == 1  # start 0 only
    assert len(data.plan_episodes([episode], 7, start_fraction=0.9)) == 3  # 0..2 leave 7 frames
    with pytest.raises(ValueError, match="11 frames"):
        data.plan_episodes([episode], 10)
    with pytest.raises(ValueError, match="start_fraction"):
        data.plan_episodes([episode], 3, start_fraction=1.0)
    with pytest.raises(ValueError, match="plan_frames"):
        WorldModelConfig(control="action", plan_frames=3)
    with pytest.raises(ValueError, match="plan_frames"):
        WorldModelConfig(control="text", plan_frames=3, frame_stride=2)


@pytest.fixture(scope="module")
def debug_setup():
    config = get_config("debug")
    return config.world_model, load_episodes(config)


@pytest.fixture(scope="module")
def debug_run(debug_setup, tmp_path_factory):
    config, episodes = debug_setup
    workdir = str(tmp_path_factory.mktemp("world_model_debug"))
    return workdir, train.train_and_evaluate(config, workdir, episodes)


def test_debug_run_logs_checkpoints_and_evaluates(debug_setup, debug_run):
    config, _ = debug_setup
    workdir, state = debug_run
    assert int(state.step) == 2
    rows = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    for name in ("visual_loss", "done_rmse", "token_accuracy", "changed_token_accuracy",
                 "copy_accuracy", "grad_norm"):
        assert np.isfinite(rows[0][name]), name
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
        metrics = json.load(f)
    assert set(train.EVAL_METRICS) | {"done_auroc", "done_rmse"} <= set(metrics)
    assert metrics["copy_accuracy"] > 0.5  # the synthetic blob moves at most one cell per step
    assert os.path.getsize(os.path.join(workdir, "curves.png")) > 0
    _, params = train.restore_params(workdir, config)
    leaves = zip(jax.tree.leaves(params), jax.tree.leaves(state.params), strict=True)
    assert all(np.array_equal(a, b) for a, b in leaves)


def test_resume_is_exact_and_refuses_another_model(debug_setup, debug_run, tmp_path):
    config, episodes = debug_setup
    one_step = world_model_config("debug")
    one_step.num_steps = 1
    train.train_and_evaluate(one_step, str(tmp_path), episodes)
    resumed = train.train_and_evaluate(config, str(tmp_path), episodes)  # steps 1 -> 2
    leaves = zip(jax.tree.leaves(resumed.params), jax.tree.leaves(debug_run[1].params), strict=True)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in leaves)
    other = world_model_config("debug")
    other.model.width = 16
    with pytest.raises(ValueError, match=r"model\.width is 16 in the config but 32"):
        train.train_and_evaluate(other, debug_run[0], episodes)


def test_checkpoints_older_than_a_config_field_load_with_its_old_value(tmp_path):
    """A checkpoint written before `frame_stride` existed counts as stride 1: it loads under a
    stride-1 config and is refused, naming the field, under another stride."""
    from roboscape_jax.tokenizer.train import check_resume_compatible, model_fingerprint
    from roboscape_jax.utils.checkpoint import Checkpointer

    config = world_model_config("debug", "text")
    meta = model_fingerprint(config)
    del meta["model_config"]["frame_stride"]
    with Checkpointer(str(tmp_path)) as ckpt:
        ckpt.save(1, {"w": np.zeros(2)}, meta, force=True)
    with pytest.raises(ValueError, match="frame_stride is 1 in the config but None"):
        check_resume_compatible(str(tmp_path), config)  # no defaults: the old behaviour
    check_resume_compatible(str(tmp_path), config, train.FIELDS_ADDED_LATER)
    config.model.frame_stride = 4
    with pytest.raises(ValueError, match="frame_stride is 4 in the config but 1"):
        check_resume_compatible(str(tmp_path), config, train.FIELDS_ADDED_LATER)


def test_text_model_step(debug_setup):
    _, episodes = debug_setup
    config = world_model_config("debug", control="text")
    model, tx = train.create_model(config.model), train.make_optimizer(config)
    mesh = sharding.data_mesh()
    state = sharding.replicate(train.init_state(config, model, tx), mesh)
    batch_fn = data.make_batch_fn(episodes["train"], batch_size=4, num_frames=3, seed=0,
                                  control="text")
    batch = batch_fn(0)
    assert batch["text"].shape == (4, 8, 384) and batch["text_mask"].shape == (4, 8)
    state, metrics = train.make_step(config, model, tx, mesh)(state, batch)
    assert int(state.step) == 1 and np.isfinite(float(metrics["loss"]))


def _latent_model_batch():
    """(config, model, params, batch) of the debug action model with margins and a latent head,
    and a random batch of 4 windows."""
    config = world_model_config("debug")
    config.model.update(margin_inputs=True, latent_head=True)
    m = config.model
    model = train.create_model(m)
    params = train.init_params(model, jax.random.PRNGKey(0))
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    shape = (4, m.num_frames, m.grid_height, m.grid_width)
    batch = {"tokens": jax.random.randint(keys[0], shape, 0, 2**m.num_bits),
             "actions": jax.random.normal(keys[1], (*shape[:2], 7)),
             "done": np.zeros(shape[:2], np.float32),
             "margins": jax.random.normal(keys[2], (*shape, m.num_bits))}
    return config, model, params, batch


def test_latent_head_adds_its_weighted_error_to_the_loss():
    """A `latent_head` model's loss is Eq. 4 plus latent_weight x the latent head's squared
    error, logged with copying's; at init the head's correction is zero, so the two agree."""
    config, model, params, batch = _latent_model_batch()
    losses_by_weight = {}
    for weight in (0.0, 2.0):
        config.loss.latent_weight = weight
        loss, metrics = train.make_loss_fn(config, model)(params, batch, jax.random.PRNGKey(2))
        losses_by_weight[weight] = float(loss)
    assert float(metrics["latent_mse"]) > 0
    np.testing.assert_allclose(metrics["latent_mse"], metrics["latent_mse_copy"], rtol=1e-6)
    np.testing.assert_allclose(losses_by_weight[2.0] - losses_by_weight[0.0],
                               2.0 * float(metrics["latent_mse"]), rtol=1e-4)


def test_gripper_randomized_windows_train_only_the_done_head():
    """`loss.done_gripper_fraction`: the chosen windows get a random +-1 gripper (no other action
    dimension changes) and score no tokens, so with every window chosen the visual and latent
    losses are empty and only the done loss remains; a text model refuses the option."""
    actions = jax.random.uniform(jax.random.PRNGKey(0), (64, 4, 7), minval=-0.5, maxval=0.5)
    new, randomized = train.randomize_gripper(jax.random.PRNGKey(1), actions, 0.5)
    new, randomized = np.asarray(new), np.asarray(randomized)
    assert 16 < randomized.sum() < 48
    np.testing.assert_array_equal(new[..., :6], np.asarray(actions)[..., :6])
    np.testing.assert_array_equal(new[~randomized], np.asarray(actions)[~randomized])
    assert set(np.unique(new[randomized][..., 6])) == {-1.0, 1.0}

    config, model, params, batch = _latent_model_batch()
    config.loss.update(done_gripper_fraction=1.0, latent_weight=1.0)
    loss, metrics = train.make_loss_fn(config, model)(params, batch, jax.random.PRNGKey(2))
    assert float(metrics["visual_loss"]) == 0.0 and float(metrics["latent_mse"]) == 0.0
    assert float(metrics["done_rmse"]) > 0
    np.testing.assert_allclose(loss, config.loss.done_weight * metrics["done_rmse"], rtol=1e-6)
    config.loss.done_gripper_fraction = 0.0
    _, metrics = train.make_loss_fn(config, model)(params, batch, jax.random.PRNGKey(2))
    assert float(metrics["visual_loss"]) > 0
    text = world_model_config("debug", control="text")
    text.loss.done_gripper_fraction = 0.5
    with pytest.raises(ValueError, match="done_gripper_fraction"):
        train.make_loss_fn(text, train.create_model(text.model))


def test_evaluate_leaves_out_an_undefined_done_auroc():
    tokens = np.zeros((4, 2, 2, 2), np.int32)
    tokens[:, 1, 0, 0] = 1  # one token of four changes in every window
    windows = {"tokens": tokens, "done": np.ones((4, 2), np.float32)}

    def eval_step(params, batch):  # predicts the true last frame, done 0.9
        return batch["tokens"][:, -1], np.full(len(batch["tokens"]), 0.9, np.float32)

    metrics = train.evaluate(eval_step, None, windows, batch_size=2)
    assert "done_auroc" not in metrics  # every window ends done: one class
    assert metrics["token_accuracy"] == 1.0 and metrics["changed_token_accuracy"] == 1.0
    assert metrics["copy_accuracy"] == 0.75
    windows["done"][:2, -1] = 0.0
    assert np.isfinite(train.evaluate(eval_step, None, windows, batch_size=2)["done_auroc"])


@pytest.mark.parametrize("variant", ["debug", "tiny", "base", "paper"])
def test_config_variants_build_models(variant):
    for control in ("action", "text"):
        config = world_model_config(variant, control)
        assert train.create_model(config.model).config.control == control
    if variant == "tiny":  # the size of the 2-core prototype (1.8M params)
        model, tx = train.create_model(config.model), train.make_optimizer(config)
        state = jax.eval_shape(lambda: train.init_state(config, model, tx))
        count = sum(p.size for p in jax.tree.leaves(state.params))
        assert 1e6 < count < 3e6, count


_TEN_STEPS = """
import json
import jax
from experiments.configs.world_model import world_model_config
from roboscape_jax.utils import sharding
from roboscape_jax.world_model import data, train
config = world_model_config("debug", "action")
config.input.batch_size = 8
episodes = data.synthetic_episodes(6, grid=(16, 8), num_bits=6)
batch_fn = data.make_batch_fn(episodes, batch_size=8, num_frames=3, seed=0)
model = train.create_model(config.model)
tx = train.make_optimizer(config)
losses, split, sizes = {}, 0, {}
for name, n, fsdp in (("one", 1, False), ("four", 0, False), ("fsdp", 0, True)):
    mesh = sharding.parallel_mesh({"num_devices": n})  # the trainers' mesh; 0: every device
    sizes[name] = mesh.size
    # the debug model's leaves are small: split every leaf of >= 256 entries
    state, shardings = sharding.place_parallel_state(
        train.init_state(config, model, tx), mesh, {"fsdp": fsdp, "fsdp_min_size": 256})
    step = train.make_step(config, model, tx, mesh, shardings)
    losses[name] = []
    for i in range(10):
        batch = sharding.shard_batch(batch_fn(i), mesh)
        state, metrics = step(state, batch)
        losses[name].append(float(metrics["loss"]))
    if fsdp:  # leaves really are split, and stay split after the steps
        split = sum(len(x.sharding.spec) > 0 and x.addressable_shards[0].data.size < x.size
                    for x in jax.tree.leaves(state.params))
print(json.dumps({"devices": len(jax.devices()), **losses, "split_leaves": split,
                  "mesh_sizes": sizes}))
"""


def test_four_devices_match_one_device_for_ten_steps():
    """Issue 9: data-parallel training over 4 (fake CPU) devices, replicated or FSDP, gives
    the 1-device losses."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    out = subprocess.run([sys.executable, "-c", _TEN_STEPS], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    one, four = result["one"], result["four"]
    assert result["devices"] == 4 and len(one) == len(four) == 10
    assert result["mesh_sizes"] == {"one": 1, "four": 4, "fsdp": 4}
    assert len(set(one)) > 1  # the loss moves: the steps really trained
    np.testing.assert_allclose(four, one, rtol=1e-5)
    # FSDP (parameters and Adam moments split over the 4 devices) changes placement only
    assert result["split_leaves"] > 0
    np.testing.assert_allclose(result["fsdp"], one, rtol=1e-5)
