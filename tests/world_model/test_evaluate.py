"""Decode-time copy penalty, action normalisation and the evaluation helpers' bookkeeping."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roboscape_jax.world_model import evaluate as wm_eval
from roboscape_jax.world_model import train as wm_train
from roboscape_jax.world_model.data import Episode
from roboscape_jax.world_model.model import WorldModel, WorldModelConfig, create_model, init_params
from roboscape_jax.world_model.sampling import copy_penalised
from tests.world_model.conftest import TINY, random_inputs


def test_copy_penalty_moves_the_argmax_off_the_previous_code_only_when_asked():
    logits = jnp.zeros((1, 2, 2, 8)).at[..., 3].set(1.0)  # every factor prefers sub-code 3
    previous = jnp.asarray([[3 + 3 * 8, 0]])  # position 0 was (3, 3); position 1 was (0, 0)
    assert jnp.array_equal(copy_penalised(logits, previous, 6, 0.0), logits)
    out = copy_penalised(logits, previous, 6, 2.0)
    assert jnp.all(jnp.argmax(out[0, 0], -1) != 3)  # the copy lost to the next-best code
    assert jnp.all(jnp.argmax(out[0, 1], -1) == 3)  # no copy at stake: unchanged argmax
    assert float(out[0, 1, 0, 0]) == -2.0


def test_action_normalisation_equals_feeding_normalised_actions():
    config = WorldModelConfig(control="action", **TINY)
    mean, std = tuple(np.linspace(-0.1, 0.1, 7)), tuple(np.linspace(0.02, 1.0, 7))
    plain, normed = WorldModel(config), WorldModel(
        dataclasses.replace(config, action_mean=mean, action_std=std))
    tokens, actions, _ = random_inputs(config, jax.random.PRNGKey(0))
    params = plain.init(jax.random.PRNGKey(1), tokens, actions)
    expected = plain.apply(params, tokens, (actions - jnp.asarray(mean)) / jnp.asarray(std))
    got = normed.apply(params, tokens, actions)
    np.testing.assert_allclose(got.logits, expected.logits, atol=1e-5)
    with pytest.raises(ValueError, match="action_std must be positive"):
        dataclasses.replace(config, action_mean=mean, action_std=(0.0,) * 7)
    with pytest.raises(ValueError, match="action_mean has 2 entries"):
        dataclasses.replace(config, action_mean=(0.0, 1.0))


def test_action_stats_are_written_once_and_reused_on_resume(tmp_path):
    rng = np.random.default_rng(0)
    first = [Episode(np.zeros((5, 4, 2), np.int32), rng.normal(size=(5, 7)).astype(np.float32),
                     np.zeros(5, np.float32))]
    stats = wm_train.load_or_write_action_stats(str(tmp_path), first)
    np.testing.assert_allclose(stats["std"], first[0].actions.std(0), rtol=1e-5)
    other = [first[0]._replace(actions=first[0].actions * 10)]
    assert wm_train.load_or_write_action_stats(str(tmp_path), other) == stats
    model = create_model(dict(TINY, control="action"), wm_train.read_action_stats(str(tmp_path)))
    assert model.config.action_std == tuple(stats["std"])


def test_rollout_starts_align_context_actions_and_real_future():
    t, h, w = 12, 4, 2
    tokens = np.arange(t)[:, None, None] * np.ones((1, h, w), np.int32)  # frame i holds i
    actions = np.arange(t, dtype=np.float32)[:, None] * np.ones((1, 7), np.float32)  # a_i = i
    frames = {"ep": np.arange(t, dtype=np.uint8)[:, None, None, None] * np.ones((1, 8, 4, 3),
                                                                                np.uint8)}
    episode = Episode(tokens.astype(np.int32), actions, np.zeros(t, np.float32), episode_id="ep")
    starts = wm_eval.rollout_starts([episode], frames, num_context=3, horizon=4,
                                    starts_per_episode=5, seed=0)
    for i in range(len(starts.actions)):
        last = int(starts.window.tokens[i, -1, 0, 0])  # the last context frame's index
        assert list(np.asarray(starts.window.tokens[i, :, 0, 0])) == [last - 2, last - 1, last]
        # actions[t] led into frame t + 1: the context frames' actions, then the future ones
        assert list(np.asarray(starts.window.actions[i, :, 0])) == [max(last - 3, 0), last - 2,
                                                                   last - 1]
        assert list(starts.actions[i, :, 0]) == [last, last + 1, last + 2, last + 3]
        assert list(starts.real[i, :, 0, 0, 0]) == [last + 1, last + 2, last + 3, last + 4]
        assert starts.last_real[i, 0, 0, 0] == last
        assert starts.first_real[i, 0, 0, 0] == 0  # the episode's first frame: a reference
    with pytest.raises(ValueError, match="no episode has 13 frames"):
        wm_eval.rollout_starts([episode], frames, num_context=3, horizon=10)


def test_choose_copy_penalty_keeps_overall_accuracy_at_or_above_copying():
    sweep = {0.0: dict(token_accuracy=0.60, copy_accuracy=0.55, changed_token_accuracy=0.2),
             1.0: dict(token_accuracy=0.58, copy_accuracy=0.55, changed_token_accuracy=0.3),
             2.0: dict(token_accuracy=0.50, copy_accuracy=0.55, changed_token_accuracy=0.4)}
    assert wm_eval.choose_copy_penalty(sweep) == 1.0
    worse = {p: dict(m, copy_accuracy=0.9) for p, m in sweep.items()}
    assert wm_eval.choose_copy_penalty(worse) == 0.0
    lpips = {0.0: 0.12, 1.0: 0.11, 2.0: 0.05}  # 2.0 rolls out best but loses overall accuracy
    assert wm_eval.choose_copy_penalty(sweep, lpips) == 1.0
    assert wm_eval.choose_copy_penalty(worse, lpips) == 2.0


def test_choose_decoding_prefers_lowest_open_loop_lpips_then_fewer_passes():
    sweep = {0.0: dict(token_accuracy=0.60, copy_accuracy=0.55),
             1.0: dict(token_accuracy=0.50, copy_accuracy=0.55)}  # below copying: not chosen
    lpips = {(1, 0.0): 0.10, (2, 0.0): 0.09, (1, 1.0): 0.01, (2, 1.0): 0.01}
    assert wm_eval.choose_decoding(sweep, lpips) == (2, 0.0)
    assert wm_eval.choose_decoding(sweep, {**lpips, (1, 0.0): 0.09}) == (1, 0.0)  # a tie
    worse = {p: dict(m, copy_accuracy=0.9) for p, m in sweep.items()}  # none keeps accuracy
    assert wm_eval.choose_decoding(worse, lpips) == (1, 1.0)
    with pytest.raises(ValueError, match="at least one"):
        wm_eval.choose_decoding(sweep, {})


def test_teacher_forced_outputs_batch_episodes_like_one_at_a_time():
    config = WorldModelConfig(control="action", **TINY)
    model = WorldModel(config)
    tokens, actions, _ = random_inputs(config, jax.random.PRNGKey(0))
    params = model.init(jax.random.PRNGKey(1), tokens, actions)
    rng = np.random.default_rng(0)
    episodes = [Episode(rng.integers(0, 2**config.num_bits, (n, 4, 2)).astype(np.int32),
                        rng.normal(size=(n, 7)).astype(np.float32), np.zeros(n, np.float32))
                for n in (5, 3)]
    ctx = wm_eval.EvalContext(model, params, None, None, None)
    together = wm_eval.teacher_forced_outputs(ctx, episodes, batch_size=4)
    assert [d.shape for d, _ in together] == [(5,), (3,)]
    assert [f.shape for _, f in together] == [(5, config.width), (3, config.width)]
    for ep, (done, features) in zip(episodes, together, strict=True):
        alone_done, alone_features = wm_eval.teacher_forced_outputs(ctx, [ep], batch_size=4)[0]
        np.testing.assert_allclose(done, alone_done, atol=1e-6)
        np.testing.assert_allclose(features, alone_features, atol=1e-5)
    # The last frame's done reads the window of real frames that ends there.
    window = wm_eval.make_window(episodes[1], 3 - config.num_frames, config.num_frames)
    direct = model.apply(params, jnp.asarray(window["tokens"][None]),
                         jnp.asarray(window["actions"][None])).done[0, -1]
    np.testing.assert_allclose(together[1][0][-1], direct, atol=1e-6)


def test_decode_frames_gives_each_clip_its_reference_frame():
    from experiments.configs.tokenizer import tokenizer_config
    from roboscape_jax.tokenizer import api
    from roboscape_jax.tokenizer.model import create_model as create_tokenizer
    from roboscape_jax.tokenizer.model import init_params

    config = tokenizer_config("debug")
    config.model.reference_conditioning = True
    tok = create_tokenizer(config.model)
    ctx = wm_eval.EvalContext(None, None, tok, init_params(tok, jax.random.PRNGKey(0)), None)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 2**6, (2, 3, 16, 8)).astype(np.int32)  # 2 clips x 3 steps
    refs = rng.integers(0, 256, (2, 128, 64, 3)).astype(np.uint8)
    out = wm_eval.decode_frames(ctx, tokens, batch_size=4, references=refs)
    for i in range(2):
        expected = api.decode(ctx.tokenizer_params, tokens[i], model=tok,
                              reference=np.repeat(refs[i:i + 1], 3, axis=0))
        np.testing.assert_allclose(out[i], expected, atol=1e-5)
    with pytest.raises(ValueError, match="episode-first frame"):
        wm_eval.decode_frames(ctx, tokens)


def test_reward_curves_are_one_minus_lpips_to_each_target_and_view():
    """Both targets are scored in one batched call per view; each curve must still be Eq. (5)
    of its own target, frame by frame, and the sparse term c * [done >= tau] on top."""
    from roboscape_jax.tokenizer.losses import load_lpips_params, lpips_distance

    lpips = load_lpips_params()
    ctx = wm_eval.EvalContext(None, None, None, None, lpips)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 128, 64, 3), dtype=np.uint8)
    goal = rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)
    done = np.asarray([0.1, 0.2, 0.95, 0.3, 0.9])
    curves = wm_eval.reward_curves(ctx, frames, goal, done, sparse_bonus=10.0, tau=0.9)

    def expected(target, rows):
        x = jnp.asarray(frames[:, rows], jnp.float32) / 127.5 - 1
        y = jnp.asarray(np.repeat(target[None, rows], len(frames), 0), jnp.float32) / 127.5 - 1
        return 1.0 - np.asarray(lpips_distance(lpips, y, x))

    for views, rows in (("both", slice(None)), ("third", slice(0, 64))):
        np.testing.assert_allclose(curves[f"oracle_dense_{views}"], expected(frames[-1], rows),
                                   atol=1e-5)
        np.testing.assert_allclose(curves[f"world_model_dense_{views}"], expected(goal, rows),
                                   atol=1e-5)
        np.testing.assert_allclose(curves[f"world_model_{views}"],
                                   curves[f"world_model_dense_{views}"] + [0, 0, 10, 0, 10])
    assert curves["oracle_dense_both"][-1] == pytest.approx(1.0, abs=1e-5)


def _debug_tokenizer_clips(n: int = 2, c: int = 2, h: int = 3):
    """(EvalContext with the debug tokenizer and no world model, RolloutStarts of n clips: all-zero
    context tokens and actions, random real frames)."""
    from experiments.configs.tokenizer import tokenizer_config
    from roboscape_jax.tokenizer.losses import load_lpips_params
    from roboscape_jax.tokenizer.model import create_model as create_tokenizer
    from roboscape_jax.tokenizer.model import init_params

    tok = create_tokenizer(tokenizer_config("debug").model)
    ctx = wm_eval.EvalContext(None, None, tok, init_params(tok, jax.random.PRNGKey(0)),
                              load_lpips_params())
    last = np.zeros((n, c, 16, 8), np.int32)
    real = np.random.default_rng(0).integers(0, 256, (n, h, 128, 64, 3), dtype=np.uint8)
    starts = wm_eval.RolloutStarts(
        wm_eval.sampling.Window(jnp.asarray(last), jnp.zeros((n, c, 7))),
        np.zeros((n, h, 7), np.float32), real, real[:, 0], [str(i) for i in range(n)])
    return ctx, starts


def test_controllability_counts_clips_whose_done_fires_with_the_gripper_held_open():
    """A done head that reads only the gripper command (done = 1 where it is open): with the
    real actions (gripper closed, -1) no clip fires, with the gripper held open every one."""
    ctx, starts = _debug_tokenizer_clips(n=3)
    starts = starts._replace(actions=np.concatenate(
        [np.zeros((3, 3, 6), np.float32), -np.ones((3, 3, 1), np.float32)], axis=-1))

    def gripper_done(window, actions, key, reference=None):
        tokens = jnp.zeros((actions.shape[0], actions.shape[1], 16, 8), jnp.int32)
        return wm_eval.sampling.Rollout(tokens, (actions[..., -1] > 0).astype(jnp.float32),
                                        window)

    control = wm_eval.controllability(ctx, gripper_done, starts, action_range=np.ones(7),
                                      batch_size=2)
    assert control["done_fired_fraction_real_actions"] == 0.0
    assert control["done_fired_fraction_gripper_open"] == 1.0


def test_open_loop_metrics_count_the_tokens_each_step_changes():
    """A rollout that redraws every token at its first step and then holds it: 100% changed at
    step 1, none after; a copy of the last context frame changes none and scores as the
    tokenized copy."""
    ctx, starts = _debug_tokenizer_clips()
    h = starts.actions.shape[1]

    def held(tokens):
        def rollout_fn(window, actions, key, reference=None):
            out = jnp.broadcast_to(tokens, (window.tokens.shape[0], h, 16, 8))
            return wm_eval.sampling.Rollout(out, jnp.zeros(out.shape[:2]), window)
        return rollout_fn

    moved, _ = wm_eval.open_loop_metrics(ctx, held(jnp.ones((16, 8), jnp.int32)), starts)
    assert [moved[f"changed_tokens_step{k}"] for k in (1, 2, 3)] == [1.0, 0.0, 0.0]
    copied, _ = wm_eval.open_loop_metrics(ctx, held(jnp.zeros((16, 8), jnp.int32)), starts)
    assert [copied[f"changed_tokens_step{k}"] for k in (1, 2, 3)] == [0.0, 0.0, 0.0]
    assert copied["model_lpips"] == pytest.approx(copied["tokenized_copy_lpips"], abs=1e-6)


def test_fit_rollout_margins_calibrates_a_margin_model_without_the_latent_head():
    """The evaluation's fit for a model that reads margins through its bit probabilities; a
    model without margin inputs, or episodes without margins, are refused by name."""
    overrides = dict(predict_change=True, margin_inputs=True)
    config = WorldModelConfig(control="action", **{**TINY, **overrides})
    model = WorldModel(config)
    params = init_params(model, jax.random.PRNGKey(1))
    rng = np.random.default_rng(0)
    episodes = [Episode(rng.integers(0, 2**config.num_bits, (n, 4, 2)).astype(np.int32),
                        rng.normal(size=(n, 7)).astype(np.float32), np.zeros(n, np.float32),
                        episode_id=f"ep{n}",
                        margins=rng.uniform(-0.5, 1.5, (n, 4, 2, 6)).astype(np.float16))
                for n in (6, 5)]
    ctx = wm_eval.EvalContext(model, params, None, None, None)
    calibration = wm_eval.fit_rollout_margins(ctx, episodes, num_windows=16, batch_size=8)
    agreement, margin = np.asarray(calibration.agreement), np.asarray(calibration.margin)
    assert len(agreement) > 1 and np.all(np.diff(agreement) > 0)  # interp's increasing points
    assert np.all((margin >= -1.0) & (margin <= 2.0))  # the clipped range the model reads
    with pytest.raises(ValueError, match="margins"):
        wm_eval.fit_rollout_margins(ctx, [ep._replace(margins=None) for ep in episodes])
    plain = WorldModel(WorldModelConfig(control="action", **TINY))
    with pytest.raises(ValueError, match="reads no bit margins"):
        wm_eval.fit_rollout_margins(wm_eval.EvalContext(plain, params, None, None, None),
                                    episodes)
