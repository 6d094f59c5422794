"""The world-model env: rewards by hand, jit/vmap over scenes, auto-reset, bad inputs, one
compiled step for many steps, goal scenes from the text model."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roboscape_jax.env import (
    EnvConfig,
    WorldModelEnv,
    dense_reward,
    integrate_gripper,
    make_scenes,
    sanitize_action,
    sparse_reward,
)
from roboscape_jax.env.reward_baselines import (
    fit_reward_head,
    load_reward_head,
    pooled_frame_features,
    save_reward_head,
)
from roboscape_jax.tokenizer.api import decode, encode, to_uint8
from roboscape_jax.tokenizer.tokenize import frame_margins, generated_margins
from roboscape_jax.world_model.margins import flat_calibration
from roboscape_jax.world_model.model import last_frame_outputs
from roboscape_jax.world_model.sampling import (
    golden_trajectory,
    initial_window,
    predict_next_frame,
    push_frame,
)
from tests.env.conftest import MAX_STEPS, NUM_SCENES, init_world_model, random_scenes

KEY = jax.random.PRNGKey(0)
OBS = {"frame": ((128, 64, 3), jnp.uint8), "instruction": ((384,), jnp.float32),
       "gripper": ((1,), jnp.float32)}


@pytest.fixture(scope="module")
def vmapped(env_and_params):
    """(reset_to, step), jitted and vmapped over scenes; one compiled step serves every test."""
    env, _ = env_and_params
    return (jax.jit(jax.vmap(env.reset_to, in_axes=(0, None))),
            jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None))))


def _keys(i: int):
    return jax.random.split(jax.random.fold_in(KEY, i), NUM_SCENES)


def test_rewards_gripper_and_action_policy_by_hand(env_and_params):
    np.testing.assert_array_equal(sparse_reward(jnp.array([0.2, 0.9, 0.95]), 10.0, 0.9),
                                  [0.0, 10.0, 10.0])
    lpips = env_and_params[1].lpips
    frame = env_and_params[1].scenes.initial_frame[:2]
    wrist_changed = frame.at[:, 64:].set(0)  # the third view (top half) is unchanged
    np.testing.assert_allclose(dense_reward(lpips, frame, frame), [1.0, 1.0], atol=1e-5)
    np.testing.assert_allclose(dense_reward(lpips, frame, wrist_changed, "third"), 1.0, atol=1e-5)
    assert (dense_reward(lpips, frame, wrist_changed) < 0.99).all()
    g = [1.0]
    for _ in range(5):  # close from open: 1 -> 0.5 -> 0 -> -0.5 -> -1 -> -1
        g.append(float(integrate_gripper(jnp.float32(g[-1]), jnp.float32(-1.0), 0.5)))
    assert g == [1.0, 0.5, 0.0, -0.5, -1.0, -1.0]
    action, clipped, nan = sanitize_action(jnp.array([2.0, -jnp.inf, jnp.nan, 0.5, 0, 0, -1]))
    np.testing.assert_array_equal(action, [1.0, -1.0, 0.0, 0.5, 0, 0, -1])
    assert int(clipped) == 2 and bool(nan)
    action, clipped, _ = sanitize_action(jnp.array([0, 0, 0, 3.0, 0, -4.0, 1.5]))  # |rot| 5
    np.testing.assert_allclose(action, [0, 0, 0, 0.6, 0, -0.8, 1.0], rtol=1e-6)
    assert int(clipped) == 3
    action, _, _ = sanitize_action(jnp.array([0, 0, 0, jnp.inf, 0, 0, 0]))
    np.testing.assert_allclose(action, [0, 0, 0, 1, 0, 0, 0])


def test_vmapped_step_shapes_autoreset_and_one_compile(env_and_params, vmapped):
    env, params = env_and_params
    reset_to, step = vmapped
    obs, state = reset_to(jnp.arange(NUM_SCENES), params)
    first_frames = obs["frame"]
    np.testing.assert_array_equal(state.scene, [0, 1, 2])
    for t in range(1, MAX_STEPS + 2):  # past the step cap: every env truncates, then goes on
        actions = jax.random.uniform(jax.random.fold_in(KEY, t), (NUM_SCENES, 7), minval=-1)
        obs, state, reward, terminated, truncated, info = step(_keys(t), state, actions, params)
        for name, (shape, dtype) in OBS.items():
            assert obs[name].shape == (NUM_SCENES, *shape) and obs[name].dtype == dtype, name
        assert reward.shape == (NUM_SCENES,) and reward.dtype == jnp.float32
        assert terminated.dtype == truncated.dtype == jnp.bool_
        np.testing.assert_allclose(reward, info["dense"] + info["sparse"], rtol=1e-6)
        assert not terminated.any()  # random weights: done stays near 0.5
        np.testing.assert_array_equal(truncated, t == MAX_STEPS)
        np.testing.assert_array_equal(state.time, t % MAX_STEPS)
        assert (info["final_observation"]["frame"] != first_frames).any()
    assert ((obs["gripper"] >= -1) & (obs["gripper"] <= 1)).all()
    assert step._cache_size() == 1 and reset_to._cache_size() == 1


def test_step_jit_deterministic_and_matches_vmap(env_and_params, vmapped):
    env, params = env_and_params
    reset_to, vstep = vmapped
    step = jax.jit(env.step)
    _, state = env.reset_to(jnp.int32(1), params)
    action = jnp.linspace(-1, 1, 7)
    out_a, out_b = step(KEY, state, action, params), step(KEY, state, action, params)
    jax.tree.map(np.testing.assert_array_equal, out_a, out_b)
    _, states = reset_to(jnp.arange(NUM_SCENES), params)
    keys = jnp.stack([KEY] * NUM_SCENES)
    batched = vstep(keys, states, jnp.stack([action] * NUM_SCENES), params)
    np.testing.assert_array_equal(batched[0]["frame"][1], out_a[0]["frame"])
    np.testing.assert_allclose(batched[2][1], out_a[2], rtol=1e-4, atol=1e-5)
    assert batched[5]["scene"].tolist() == [0, 1, 2]


def test_clipped_and_nan_actions_are_counted_and_flagged(env_and_params, vmapped):
    _, params = env_and_params
    reset_to, step = vmapped
    _, state = reset_to(jnp.zeros(NUM_SCENES, jnp.int32), params)  # the same scene thrice
    bad = jnp.zeros((NUM_SCENES, 7)).at[0, :2].set(jnp.array([2.0, -3.0])).at[1, 3].set(jnp.nan)
    good = bad.at[0, :2].set(jnp.array([1.0, -1.0])).at[1, 3].set(0.0)
    out_bad, out_good = step(_keys(0), state, bad, params), step(_keys(0), state, good, params)
    info = out_bad[5]
    np.testing.assert_array_equal(info["clipped_action_count"], [2, 0, 0])
    np.testing.assert_array_equal(info["nan_action"], [False, True, False])
    assert not out_good[5]["nan_action"].any() and np.isfinite(out_bad[2]).all()
    jax.tree.map(np.testing.assert_array_equal, out_bad[0], out_good[0])
    np.testing.assert_array_equal(out_bad[1].actions, out_good[1].actions)


def test_done_terminates_with_sparse_bonus_and_resets(env_and_params, vmapped):
    _, params = env_and_params
    reset_to, step = vmapped
    model = jax.tree.map(lambda x: x, params.model)
    model["params"]["done_out"]["bias"] = jnp.full((1,), 30.0, jnp.float32)  # done ~ 1 always
    certain = dataclasses.replace(params, model=model)
    _, state = reset_to(jnp.arange(NUM_SCENES), certain)
    _, state, reward, terminated, truncated, info = step(_keys(1), state, jnp.zeros((3, 7)),
                                                         certain)
    assert terminated.all() and not truncated.any()
    np.testing.assert_array_equal(info["sparse"], 10.0)
    np.testing.assert_allclose(reward, info["dense"] + 10.0, rtol=1e-6)
    np.testing.assert_array_equal(state.time, 0)  # auto-reset
    assert step._cache_size() == 1


def test_bad_configs_scenes_and_actions_raise(env_and_params, tokenizer):
    env, params = env_and_params
    tok, tok_params = tokenizer
    scenes = params.scenes
    wrong = {"initial_frame": scenes.initial_frame[:, :64], "goal_frame": scenes.goal_frame[:2],
             "instruction": scenes.instruction[:, :100],
             "goal_reached": scenes.goal_reached[:, None]}
    for name, value in wrong.items():
        with pytest.raises(ValueError, match=f"scenes.{name} must have shape"):
            env.make_params(tok_params, params.model, params.lpips,
                            dataclasses.replace(scenes, **{name: value}))
    as_float = dataclasses.replace(scenes, goal_frame=scenes.goal_frame.astype(jnp.float32))
    with pytest.raises(ValueError, match="scenes.goal_frame must be uint8"):
        env.make_params(tok_params, params.model, params.lpips, as_float)
    too_long = dataclasses.replace(scenes, instruction=scenes.instruction.at[0, 0].set(1.5))
    with pytest.raises(ValueError, match="unit-norm"):
        env.make_params(tok_params, params.model, params.lpips, too_long)
    with pytest.raises(AssertionError, match=r"\(2, 7\)"):  # an unbatched step given a batch
        jax.eval_shape(env.step, KEY, env.reset_to(jnp.int32(0), params)[1], jnp.zeros((2, 7)),
                       params)
    with pytest.raises(ValueError, match="reward must be one of"):
        EnvConfig(reward="rule")
    with pytest.raises(ValueError, match="takes a fitted reward head"):
        WorldModelEnv(tok, env.model, EnvConfig(reward="embedding")).make_params(
            tok_params, params.model, params.lpips, scenes)
    with pytest.raises(ValueError, match="action world model"):
        WorldModelEnv(tok, init_world_model("text")[0])


@pytest.mark.parametrize("reward", ["proxy", "embedding"])
def test_baseline_reward_heads_pay_their_prediction(env_and_params, reward, tmp_path):
    """reward="proxy" pays the head on the new frame's pooled pixels, "embedding" on the action
    model's features of the window ending in it; heads round-trip through save/load."""
    env, params = env_and_params
    features = {"proxy": pooled_frame_features(params.initial_obs_frame),
                "embedding": jnp.ones((NUM_SCENES, env.model.config.width))}[reward]
    head, _ = fit_reward_head(np.asarray(features), np.arange(NUM_SCENES, dtype=np.float32),
                              steps=2, hidden=(8,))
    save_reward_head(str(tmp_path / "head.msgpack"), head)
    head = load_reward_head(str(tmp_path / "head.msgpack"))
    baseline = WorldModelEnv(env.tokenizer, env.model, EnvConfig(max_steps=MAX_STEPS,
                                                                 reward=reward))
    bparams = baseline.make_params(params.tokenizer, params.model, params.lpips, params.scenes,
                                   head)
    _, state = baseline.reset_to(jnp.int32(1), bparams)
    obs, next_state, r, *_, info = jax.jit(baseline.step_env)(KEY, state, jnp.zeros(7), bparams)
    if reward == "proxy":
        expected = head.predict(pooled_frame_features(obs["frame"][None]))[0]
    else:
        window = jnp.concatenate([state.tokens, next_state.tokens[-1:]])[None]
        control = jnp.concatenate([state.actions, jnp.zeros((1, 7))])[None]
        margins = jnp.concatenate([state.margins, jnp.zeros_like(state.margins[:1])])[None]
        expected = head.predict(last_frame_outputs(env.model, params.model, window, control,
                                                   None, margins)[1])[0]
    np.testing.assert_allclose(r, expected, rtol=1e-4, atol=1e-5)
    assert float(info["sparse"]) == 0.0
    with pytest.raises(ValueError, match="reads"):  # a head fit on other features
        other = {"proxy": "embedding", "embedding": "proxy"}[reward]
        WorldModelEnv(env.tokenizer, env.model, EnvConfig(reward=other)).make_params(
            params.tokenizer, params.model, params.lpips, params.scenes, head)
    with pytest.raises(FileNotFoundError, match="evaluate_world_models"):
        load_reward_head(str(tmp_path / "missing.msgpack"))


def test_progress_dense_reward_pays_the_change_in_similarity(env_and_params):
    """dense_reward="progress" pays Eq. (5)'s similarity minus the previous frame's (the first
    step: minus the decoded first frame's), so an episode's dense sum telescopes; the same frames
    and sparse terms as the paper's "similarity"."""
    env, params = env_and_params
    progress = WorldModelEnv(env.tokenizer, env.model,
                             EnvConfig(max_steps=MAX_STEPS, dense_reward="progress"))
    pparams = progress.make_params(params.tokenizer, params.model, params.lpips, params.scenes)
    start = dense_reward(params.lpips, params.initial_obs_frame, params.scenes.goal_frame)
    np.testing.assert_allclose(pparams.initial_similarity, start, rtol=1e-6)
    assert params.initial_similarity is None  # the paper's reward tracks nothing
    actions = jnp.stack([jnp.linspace(-1, 1, 7), -jnp.linspace(-1, 1, 7)])
    paid = {}
    for name, (e, p) in {"similarity": (env, params), "progress": (progress, pparams)}.items():
        step = jax.jit(e.step_env)
        _, state = e.reset_to(jnp.int32(2), p)
        paid[name] = []
        for t, action in enumerate(actions):
            obs, state, reward, *_, info = step(jax.random.fold_in(KEY, t), state, action, p)
            paid[name].append((float(info["dense"]), float(reward - info["dense"]), obs["frame"]))
    similarity = [float(start[2])] + [d for d, _, _ in paid["similarity"]]
    for t, (dense, sparse, frame) in enumerate(paid["progress"]):
        np.testing.assert_allclose(dense, similarity[t + 1] - similarity[t], atol=1e-5)
        assert sparse == paid["similarity"][t][1]
        np.testing.assert_array_equal(frame, paid["similarity"][t][2])
    assert float(state.similarity) == pytest.approx(similarity[-1], abs=1e-5)
    with pytest.raises(ValueError, match="dense_reward must be one of"):
        EnvConfig(dense_reward="delta")


def test_make_scenes_goal_from_golden_trajectory(tokenizer):
    tok, tok_params = tokenizer
    text_model, text_params = init_world_model("text")
    base = random_scenes(jax.random.PRNGKey(4), n=2)
    text, mask = jnp.ones((2, 4, 384)), jnp.array([[1, 1, 0, 0], [1, 1, 1, 0]], bool)
    for tau, reached in ((0.0, True), (1.1, False)):  # reached at once / never (last frame)
        scenes = make_scenes(tok, tok_params, text_model, text_params, base.initial_frame,
                             base.instruction, text, mask, KEY, horizon=2, tau=tau)
        assert scenes.goal_frame.shape == (2, 128, 64, 3) and scenes.goal_frame.dtype == jnp.uint8
        np.testing.assert_array_equal(scenes.goal_reached, reached)


def test_golden_trajectory_of_a_margin_text_model_pushes_generated_margins(tokenizer):
    """A text model that reads bit margins: the golden trajectory's goal equals a step-by-step
    rollout whose generated frames get the margins of their decoded images (a frame-by-frame
    model, as the paper's: the debug text model itself is a one-keyframe plan)."""
    tok, tok_params = tokenizer
    model, params = init_world_model("text", margin_inputs=True, predict_change=True,
                                     plan_frames=0)
    frames = random_scenes(jax.random.PRNGKey(5), n=2).initial_frame
    text, mask = jnp.ones((2, 4, 384)), jnp.array([[1, 1, 0, 0], [1, 1, 1, 0]], bool)
    first = encode(tok_params, frames, model=tok)
    first_margins = frame_margins(tok, tok_params, frames, first)
    with pytest.raises(ValueError, match="margin"):
        golden_trajectory(params, model, first, text, mask, KEY, horizon=3)
    goal = golden_trajectory(params, model, first, text, mask, KEY, horizon=3, tau=1.1,
                             first_margins=first_margins, tokenizer=tok,
                             tokenizer_params=tok_params)
    window = initial_window(first, model, first_margins)
    tokens, margins = window.tokens, window.margins
    for step in range(3):
        new, _ = predict_next_frame(params, model, tokens, text, jax.random.fold_in(KEY, step),
                                    control_mask=mask, margins=margins)
        tokens = push_frame(tokens, new)
        margins = push_frame(margins, generated_margins(tok, tok_params, new))
    np.testing.assert_array_equal(goal.goal_tokens, new)
    np.testing.assert_array_equal(goal.goal_index, [3, 3])
    # the margins matter: the same model fed zero margins gives other frames
    blind = golden_trajectory(params, model, first, text, mask, KEY, horizon=3, tau=1.1,
                              first_margins=jnp.zeros_like(first_margins), tokenizer=tok,
                              tokenizer_params=tok_params)
    assert (np.asarray(blind.goal_tokens) != np.asarray(new)).any()
    scenes = make_scenes(tok, tok_params, model, params, frames, jnp.zeros((2, 384)), text, mask,
                         KEY, horizon=3, tau=1.1)
    np.testing.assert_array_equal(scenes.goal_frame, to_uint8(decode(tok_params, new, model=tok)))


def test_window_carries_bit_margins_of_the_first_and_generated_frames(env_and_params):
    """The action model reads bit margins: the first frame's from its real image, a generated
    frame's from its decoded image (`frame_margins`), pushed with its tokens."""
    env, params = env_and_params
    assert env.model.config.margin_inputs
    _, state = env.reset_to(jnp.int32(2), params)
    c = env.model.config
    assert state.margins.shape == (c.num_frames - 1, c.grid_height, c.grid_width, c.num_bits)
    np.testing.assert_allclose(state.margins[-1], params.initial_margins[2])
    obs, state, *_ = jax.jit(env.step_env)(KEY, state, jnp.zeros(7), params)
    decoded = decode(params.tokenizer, state.tokens[-1:], model=env.tokenizer)
    expected = frame_margins(env.tokenizer, params.tokenizer, to_uint8(decoded),
                             state.tokens[-1:])[0]
    np.testing.assert_allclose(state.margins[-1], expected, rtol=1e-4, atol=1e-4)


def test_env_flags_the_context_frames_it_generated(tokenizer, env_and_params):
    """With a `generated_margin_flag` action model the env tells it which context frames (the
    last `time` of them) carry a decoded frame's margins."""
    tok, tok_params = tokenizer
    model, model_params = init_world_model("action", generated_margin_flag=True)
    env = WorldModelEnv(tok, model, EnvConfig(max_steps=MAX_STEPS))
    params = env.make_params(tok_params, model_params, env_and_params[1].lpips,
                             random_scenes(jax.random.PRNGKey(3)))
    _, state = env.reset_to(jnp.int32(0), params)
    num_context = model.config.num_frames - 1
    np.testing.assert_array_equal(env._generated_context(state), np.zeros((1, num_context), bool))
    step = jax.jit(env.step_env)
    _, state, reward, *_ = step(KEY, state, jnp.zeros(7), params)
    expected = np.arange(num_context) >= num_context - 1
    np.testing.assert_array_equal(env._generated_context(state)[0], expected)
    assert np.isfinite(reward)
    _, state, *_ = step(KEY, state, jnp.zeros(7), params)
    np.testing.assert_array_equal(env._generated_context(state)[0], np.ones(num_context, bool))


def test_window_takes_a_generated_frames_margins_from_the_model_when_asked(tokenizer,
                                                                          env_and_params):
    """Given a margin calibration (the pipeline's "model" margins) the env reads a generated
    frame's margins from the model, not from its decoded image, and the frame is the same: a
    model without a latent head through the calibration (here flat: 0.7 for every bit); the
    `debug` action model's latent head as its predicted latent against the chosen code (at
    init, the previous frame's latent)."""
    from roboscape_jax.tokenizer.model import index_to_bits

    env, params = env_and_params
    assert env.model.config.latent_head
    flat = flat_calibration(0.7)
    step = jax.jit(env.step_env)
    _, state = env.reset_to(jnp.int32(2), params)
    _, plain, *_ = step(KEY, state, jnp.zeros(7), params)
    _, read, *_ = step(KEY, state, jnp.zeros(7), params.replace(margin_calibration=flat))
    np.testing.assert_array_equal(read.tokens, plain.tokens)
    bits = env.model.config.num_bits
    latent = jnp.clip(state.margins[-1], -1.0, 2.0) * index_to_bits(state.tokens[-1], bits)
    np.testing.assert_allclose(read.margins[-1], latent * index_to_bits(read.tokens[-1], bits),
                               atol=1e-6)
    np.testing.assert_allclose(read.margins[:-1], plain.margins[:-1])
    assert not np.allclose(plain.margins[-1], read.margins[-1])

    tok, tok_params = tokenizer
    model, model_params = init_world_model("action", latent_head=False)
    env = WorldModelEnv(tok, model, EnvConfig(max_steps=MAX_STEPS))
    params = env.make_params(tok_params, model_params, params.lpips, params.scenes)
    step = jax.jit(env.step_env)
    _, state = env.reset_to(jnp.int32(2), params)
    _, plain, *_ = step(KEY, state, jnp.zeros(7), params)
    _, read, *_ = step(KEY, state, jnp.zeros(7), params.replace(margin_calibration=flat))
    np.testing.assert_array_equal(read.tokens, plain.tokens)
    np.testing.assert_allclose(read.margins[-1], 0.7)
    np.testing.assert_allclose(read.margins[:-1], plain.margins[:-1])
    assert not np.allclose(plain.margins[-1], 0.7)
