"""roboscape_jax.layers against the flax modules they stand in for: the same parameter tree and
initialisation, outputs and gradients (their backward passes differ, their values must not)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from roboscape_jax import layers

X = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 8, 16))
KV = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 5, 16))
MASK = jax.random.uniform(jax.random.PRNGKey(2), (2, 3, 1, 8, 5)) > 0.3
KV_LONG = jax.random.normal(jax.random.PRNGKey(4), (2, 3, 9, 16))  # 8 x 9 > FEW_KEY_MAX_PRODUCT

CASES = {
    "dense": (nn.Dense(24), layers.Dense(24), (X,), {}),
    "dense_no_bias": (nn.Dense(24, use_bias=False), layers.Dense(24, use_bias=False), (X,), {}),
    "dense_general": (nn.DenseGeneral((2, 32)), layers.DenseGeneral((2, 32)), (X,), {}),
    "dense_general_2_axes": (nn.DenseGeneral(7, axis=(-2, -1)),
                             layers.DenseGeneral(7, num_axes=2), (X,), {}),
    # X as [B, H, W, C]: the image policy's strided conv and the transformer's patch embedding
    "conv_same_stride_2": (nn.Conv(5, (3, 3), strides=(2, 2)),
                           layers.Conv(5, (3, 3), strides=(2, 2)), (X,), {}),
    "conv_valid_patches": (nn.Conv(4, (2, 2), strides=(2, 2), padding="VALID"),
                           layers.Conv(4, (2, 2), strides=(2, 2), padding="VALID"), (X,), {}),
    "conv_explicit_padding_lead_dims": (nn.Conv(3, (3, 2), padding=((1, 0), (2, 1))),
                                        layers.Conv(3, (3, 2), padding=((1, 0), (2, 1))),
                                        (X[None],), {}),
    "attention": (nn.MultiHeadDotProductAttention(num_heads=4, deterministic=True),
                  layers.MultiHeadDotProductAttention(4), (X, KV), {"mask": MASK}),
    "attention_many_keys": (nn.MultiHeadDotProductAttention(num_heads=4, deterministic=True),
                            layers.MultiHeadDotProductAttention(4), (X, KV_LONG), {}),
}


def test_few_and_many_key_attention_take_their_own_paths():
    assert 8 * 5 <= layers.FEW_KEY_MAX_PRODUCT < 8 * 9


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_few_key_attention_matches_flax_with_a_causal_mask(dtype):
    # the world model's temporal attention: [B, K, T, H, D] with a causal mask over T
    q, k, v = (jax.random.normal(jax.random.PRNGKey(i), (2, 6, 4, 3, 8)).astype(dtype)
               for i in range(3))
    causal = nn.make_causal_mask(jnp.ones((2, 6, 4), bool))  # [B, K, 1, T, T]
    ours = layers.few_key_attention(q, k, v, causal)
    theirs = nn.dot_product_attention(q, k, v, mask=causal)
    assert ours.shape == theirs.shape == (2, 6, 4, 3, 8) and ours.dtype == dtype
    tol = 1e-6 if dtype == jnp.float32 else 2e-2
    np.testing.assert_allclose(np.asarray(ours, np.float32), np.asarray(theirs, np.float32),
                               rtol=tol, atol=tol)
    # the first frame sees only itself: its output is its own value
    np.testing.assert_allclose(np.asarray(ours[:, :, 0], np.float32),
                               np.asarray(v[:, :, 0], np.float32), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_matches_flax(name):
    theirs, ours, args, kwargs = CASES[name]
    p_theirs = theirs.init(jax.random.PRNGKey(3), *args, **kwargs)
    p_ours = ours.init(jax.random.PRNGKey(3), *args, **kwargs)
    assert jax.tree.structure(p_theirs) == jax.tree.structure(p_ours)
    for a, b in zip(jax.tree.leaves(p_theirs), jax.tree.leaves(p_ours), strict=True):
        np.testing.assert_array_equal(a, b)
    # nonzero biases, so their gradient path is exercised
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(9), p.shape),
                          p_theirs)
    loss = lambda module: lambda p: jnp.sum(jnp.sin(module.apply(p, *args, **kwargs)))  # noqa
    np.testing.assert_allclose(ours.apply(params, *args, **kwargs),
                               theirs.apply(params, *args, **kwargs), rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(jax.grad(loss(theirs))(params)),
                    jax.tree.leaves(jax.grad(loss(ours))(params)), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_affine_input_gradient_matches_autodiff():
    kernel = jax.random.normal(jax.random.PRNGKey(4), (16, 2, 3))
    bias = jax.random.normal(jax.random.PRNGKey(5), (2, 3))
    plain = lambda x: jnp.sum(jnp.tanh(jnp.einsum("btki,ifo->btkfo", x, kernel) + bias))  # noqa
    ours = lambda x: jnp.sum(jnp.tanh(layers.affine(x, kernel, bias)))  # noqa
    np.testing.assert_allclose(jax.grad(ours)(X), jax.grad(plain)(X), rtol=1e-5, atol=1e-6)


def test_attention_rejects_a_width_the_heads_do_not_divide():
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        layers.MultiHeadDotProductAttention(3).init(jax.random.PRNGKey(0), X)


def test_bfloat16_gradients_keep_the_parameter_dtypes():
    layer = layers.Dense(8, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    params = layer.init(jax.random.PRNGKey(0), X)
    grads = jax.grad(lambda p: jnp.sum(layer.apply(p, X).astype(jnp.float32)))(params)
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.bfloat16)}
    # the bias's gradient is the number of rows each output is summed over
    np.testing.assert_allclose(np.asarray(grads["params"]["bias"], np.float32), X.size // 16)


def test_dense_needs_a_positive_width():
    with pytest.raises(ValueError, match="positive int of features"):
        layers.Dense()


def test_conv_gradient_inside_a_scan_matches_flax():
    # the path PPO takes: the kernel's gradient computed inside a loop body
    theirs, ours = nn.Conv(6, (3, 3), strides=(2, 2)), layers.Conv(6, (3, 3), strides=(2, 2))
    params = theirs.init(jax.random.PRNGKey(3), X)

    def scanned(module):
        def body(p, x):
            g = jax.grad(lambda p: jnp.sum(jnp.tanh(module.apply(p, x))))(p)
            return jax.tree.map(lambda a, b: a - 0.1 * b, p, g), None
        return jax.jit(lambda p: jax.lax.scan(body, p, jnp.stack([X, 2 * X, -X]))[0])

    for a, b in zip(jax.tree.leaves(scanned(theirs)(params)),
                    jax.tree.leaves(scanned(ours)(params)), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_conv_rejects_input_without_spatial_dims():
    with pytest.raises(ValueError, match=r"\[..., H, W, C\] input, got shape \(8, 16\)"):
        layers.Conv(4, (3, 3)).init(jax.random.PRNGKey(0), X[0, 0])
    with pytest.raises(ValueError, match="Conv is 2-D"):
        layers.Conv(4, (3, 3, 3)).init(jax.random.PRNGKey(0), X)
