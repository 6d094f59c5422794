"""The text-model ensemble: members decoded together as one world model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roboscape_jax.world_model import ensemble, sampling
from tests.world_model.conftest import make_model, random_inputs

KEY = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def members():
    (model, p0), (_, p1) = make_model("text"), make_model("text")
    p1 = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(KEY, x.shape), p1)  # another member
    return model, p0, p1


def test_ensemble_output_is_the_members_mean(members):
    model, p0, p1 = members
    both, params = ensemble.ensemble_of([(model, p0), (model, p1)])
    assert isinstance(both, ensemble.EnsembleModel) and both.size == 2
    assert both.config == model.config
    args = random_inputs(model.config, jax.random.PRNGKey(3))
    out = both.apply(params, *args)
    o0, o1 = model.apply(p0, *args), model.apply(p1, *args)
    mean_log_p = (jax.nn.log_softmax(o0.logits, -1) + jax.nn.log_softmax(o1.logits, -1)) / 2
    np.testing.assert_allclose(out.logits, mean_log_p, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.done, (o0.done + o1.done) / 2, rtol=1e-6)
    np.testing.assert_allclose(jax.nn.sigmoid(out.done_logit), out.done, rtol=1e-5)
    # one member is that member, unwrapped
    assert ensemble.ensemble_of([(model, p0)]) == (model, p0)


def test_an_ensemble_of_one_model_twice_decodes_as_that_model(members):
    model, p0, _ = members
    twice, params = ensemble.ensemble_of([(model, p0), (model, p0)])
    c = model.config
    first = jax.random.randint(KEY, (2, c.grid_height, c.grid_width), 0, 2**c.num_bits)
    text, mask = jnp.ones((2, 5, c.text_dim)), jnp.array([[1, 1, 0, 0, 0]] * 2, bool)
    one = sampling.golden_trajectory(p0, model, first, text, mask, KEY, horizon=3)
    two = sampling.golden_trajectory(params, twice, first, text, mask, KEY, horizon=3)
    np.testing.assert_array_equal(one.goal_tokens, two.goal_tokens)
    np.testing.assert_array_equal(one.goal_index, two.goal_index)


def test_members_of_different_configs_are_refused(members):
    model, p0, _ = members
    other, p_other = make_model("text", depth=1)
    with pytest.raises(ValueError, match="share one config"):
        ensemble.ensemble_of([(model, p0), (other, p_other)])
    with pytest.raises(ValueError, match="at least one member"):
        ensemble.ensemble_of([])
