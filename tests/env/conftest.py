"""Env tests: debug-size random models (fast compiles), the real AlexNet LPIPS, 3 random scenes."""

import jax
import jax.numpy as jnp
import pytest

from experiments.configs.tokenizer import tokenizer_config
from experiments.configs.world_model import world_model_config
from roboscape_jax.env import EnvConfig, ObservationAdapter, Scenes, WorldModelEnv
from roboscape_jax.tokenizer.losses import load_lpips_params
from roboscape_jax.tokenizer.model import create_model as create_tokenizer
from roboscape_jax.world_model.model import create_model as create_world_model
from roboscape_jax.world_model.model import init_params

NUM_SCENES, MAX_STEPS = 3, 3


@pytest.fixture(scope="module", autouse=True)
def _fast_compiles(fast_compiles):
    yield


def adapter_like(env: WorldModelEnv, tokenizer_model) -> ObservationAdapter:
    """The simulator-side adapter with `env`'s gripper proxy settings."""
    return ObservationAdapter(tokenizer_model, gripper_rate=env.config.gripper_rate,
                              initial_gripper=env.config.initial_gripper)


def init_world_model(control: str, **overrides):
    """(model, params) of the `debug` world model for `control`."""
    model = create_world_model({**world_model_config("debug", control).model.to_dict(),
                                **overrides})
    return model, init_params(model, jax.random.PRNGKey(1 if control == "action" else 2))


@pytest.fixture(scope="session")
def tokenizer():
    model = create_tokenizer(tokenizer_config("debug").model)
    return model, jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 128, 64, 3)))


def random_scenes(key, n: int = NUM_SCENES) -> Scenes:
    rng_frames, rng_goal, rng_text = jax.random.split(key, 3)
    frames = jax.random.randint(rng_frames, (n, 128, 64, 3), 0, 256).astype(jnp.uint8)
    goal = jax.random.randint(rng_goal, (n, 128, 64, 3), 0, 256).astype(jnp.uint8)
    text = jax.random.normal(rng_text, (n, 384))
    return Scenes(frames, text / jnp.linalg.norm(text, axis=-1, keepdims=True), goal,
                  jnp.ones((n,), bool))


@pytest.fixture(scope="session")
def env_and_params(tokenizer):
    """(env, params): `max_steps` = 3 so that tests reach truncation."""
    tok, tok_params = tokenizer
    model, model_params = init_world_model("action")
    env = WorldModelEnv(tok, model, EnvConfig(max_steps=MAX_STEPS))
    scenes = random_scenes(jax.random.PRNGKey(3))
    return env, env.make_params(tok_params, model_params, load_lpips_params(), scenes)
