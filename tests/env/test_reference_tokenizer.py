"""With a reference-conditioned tokenizer every frame is encoded and decoded given its episode's
first frame: the world-model env uses each scene's initial frame, the golden trajectory the
scenes' initial frames, the observation adapter the episode's first render."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs.tokenizer import tokenizer_config
from roboscape_jax.env import EnvConfig, WorldModelEnv, make_scenes
from roboscape_jax.env.observation import observation_frames
from roboscape_jax.tokenizer.api import decode, to_uint8
from roboscape_jax.tokenizer.losses import load_lpips_params
from roboscape_jax.tokenizer.model import create_model, init_params
from roboscape_jax.tokenizer.tokenize import frame_margins
from tests.env.conftest import adapter_like, init_world_model, random_scenes

KEY = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def ref_tokenizer():
    config = tokenizer_config("debug")
    config.model.reference_conditioning = True
    model = create_model(config.model)
    return model, init_params(model, jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def ref_env(ref_tokenizer):
    tok, tok_params = ref_tokenizer
    model, model_params = init_world_model("action")
    env = WorldModelEnv(tok, model, EnvConfig(max_steps=3))
    return env, env.make_params(tok_params, model_params, load_lpips_params(),
                                random_scenes(jax.random.PRNGKey(3)))


def test_env_decodes_and_re_encodes_with_the_scenes_first_frame(ref_env):
    env, params = ref_env
    _, state = env.reset_to(jnp.int32(1), params)
    obs, state, *_ = jax.jit(env.step_env)(KEY, state, jnp.zeros(7), params)
    first = params.scenes.initial_frame[1][None]
    decoded = to_uint8(decode(params.tokenizer, state.tokens[-1:], model=env.tokenizer,
                              reference=first))
    np.testing.assert_array_equal(obs["frame"], decoded[0])
    other = to_uint8(decode(params.tokenizer, state.tokens[-1:], model=env.tokenizer,
                            reference=params.scenes.initial_frame[0][None]))
    assert (np.asarray(other) != np.asarray(decoded)).any()  # the reference matters
    expected = frame_margins(env.tokenizer, params.tokenizer, decoded, state.tokens[-1:], first)
    np.testing.assert_allclose(state.margins[-1], expected[0], rtol=1e-4, atol=1e-4)


def test_adapter_keeps_the_first_render_as_reference(ref_env, ref_tokenizer):
    env, params = ref_env
    tok, tok_params = ref_tokenizer
    adapter = adapter_like(env, tok)
    env_obs, _ = env.reset_to(jnp.int32(2), params)
    first = np.asarray(params.scenes.initial_frame[2])
    obs, state = adapter.reset(tok_params, first, params.scenes.instruction[2])
    diff = np.abs(np.asarray(obs["frame"], int) - np.asarray(env_obs["frame"], int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # as the env shows its reset frame
    later = np.asarray(params.scenes.goal_frame[2])
    obs, state = adapter.step(tok_params, state, later, jnp.zeros(7))
    np.testing.assert_array_equal(
        obs["frame"], observation_frames(tok, tok_params, later[None], first[None])[0])
    with pytest.raises(ValueError, match="reference-conditioned"):
        observation_frames(tok, tok_params, later[None])


def test_golden_goal_is_decoded_with_the_initial_frames(ref_tokenizer):
    tok, tok_params = ref_tokenizer
    model, params = init_world_model("text", margin_inputs=True)
    base = random_scenes(jax.random.PRNGKey(5), n=2)
    text, mask = jnp.ones((2, 4, 384)), jnp.array([[1, 1, 0, 0], [1, 1, 1, 0]], bool)
    scenes = make_scenes(tok, tok_params, model, params, base.initial_frame, base.instruction,
                         text, mask, KEY, horizon=2, tau=1.1)
    assert scenes.goal_frame.shape == (2, 128, 64, 3) and scenes.goal_frame.dtype == jnp.uint8
    assert not bool(np.asarray(scenes.goal_reached).any())
