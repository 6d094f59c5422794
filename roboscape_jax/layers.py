"""Dense, DenseGeneral and multi-head attention with flax's parameters (same names, shapes and
initialisation, so checkpoints of either load in the other) whose bias gradient comes out of the
kernel's gradient product.

Why: autodiff turns a bias broadcast over N rows into a sum over those rows, and XLA:CPU runs that
column reduction 20-50x slower than a matrix product of the same size (measured here: [8192, 1024]
33 ms vs 0.7 ms). `affine`'s backward computes [x, 1]^T g, one GEMM whose last row is the bias's
gradient: the world model's training step on 2 CPU cores went from about 1.1 s to 0.75 s. Values
and gradients equal flax's (tests hold them to each other).

`Conv` (2-D, NHWC) computes its kernel's and bias's gradient as one product of the input's
patches with the output's gradient. XLA:CPU runs a convolution's kernel gradient inside a loop
body (`lax.scan`, `fori_loop`) 30-140x slower than outside one (jax 0.7.1, 2 cores: a 3x3 stride-2
conv on [128, 128, 64, 3], 4 gradients 62 ms straight, 1862 ms in a `fori_loop`; the same report:
jax-ml/jax#12868), and PPO's minibatch updates run the image policy's gradient inside a scan: one
epoch of 4 minibatches of 128 took 10.9 s instead of 0.45 s (2026-12-07).

Attention over a few keys for a few queries (the world model's temporal attention: 4 frames per
spatial position, 2048 sequences of a batch of 16) runs as broadcast products and sums instead of
XLA:CPU's batched dot, which loops over thousands of 4 x 32 x 4 products: 4.4 ms instead of
35-50 ms per temporal attention's forward and backward on 2 CPU cores (2026-12-06). Larger
attentions (128 spatial tokens, 128 queries of 7 control tokens) stay on the dot.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


@jax.custom_vjp
def affine(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """x [..., *I] contracted with kernel [*I, *O] over I, plus bias [*O]."""
    return _affine(x, kernel, bias)


def _contract(x: jax.Array, kernel: jax.Array, num_axes: int) -> jax.Array:
    """x's trailing `num_axes` axes against kernel's leading ones."""
    contract = tuple(range(x.ndim - num_axes, x.ndim))
    return jax.lax.dot_general(x, kernel, ((contract, tuple(range(num_axes))), ((), ())))


def _affine(x, kernel, bias):
    return _contract(x, kernel, kernel.ndim - bias.ndim) + bias


def _affine_fwd(x, kernel, bias):
    return _affine(x, kernel, bias), (x, kernel, bias)


def _affine_bwd(res, g):
    x, kernel, bias = res
    bias_shape = bias.shape
    n_in = kernel.ndim - bias.ndim
    d_in, d_out = int(np.prod(kernel.shape[:n_in])), int(np.prod(bias_shape))
    x2, g2 = x.reshape(-1, d_in), g.reshape(-1, d_out)
    # [x, 1]^T g: the kernel's gradient and, in its last row, the bias's (one GEMM)
    xa = jnp.concatenate([x2, jnp.ones((x2.shape[0], 1), x2.dtype)], axis=1)
    dkb = jax.lax.dot_general(xa, g2, (((0,), (0,)), ((), ())),  # sums in float32 (bfloat16)
                              preferred_element_type=jnp.float32)
    dx = (g2 @ kernel.reshape(d_in, d_out).T).reshape(x.shape)
    return (dx, dkb[:d_in].reshape(kernel.shape).astype(kernel.dtype),
            dkb[d_in].reshape(bias_shape).astype(bias.dtype))


affine.defvjp(_affine_fwd, _affine_bwd)


def _flat_init(init, in_shape: Sequence[int], out_shape: Sequence[int]):
    """flax DenseGeneral's kernel initialisation: `init` on (prod(in), prod(out)), reshaped."""

    def wrapped(rng, shape, dtype=jnp.float32):
        flat = (int(np.prod(in_shape)), int(np.prod(out_shape)))
        return jnp.reshape(init(rng, flat, dtype), shape)

    return wrapped


class DenseGeneral(nn.Module):
    """flax.linen.DenseGeneral over the trailing `num_axes` input axes (no batch dims)."""

    features: int | Sequence[int]
    num_axes: int = 1
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = (self.features,) if isinstance(self.features, int) else tuple(self.features)
        in_shape = x.shape[x.ndim - self.num_axes:]
        kernel = self.param("kernel", _flat_init(self.kernel_init, in_shape, features),
                            in_shape + features, self.param_dtype)
        bias = (self.param("bias", lambda rng, shape, dtype: jnp.reshape(
                    self.bias_init(rng, (int(np.prod(shape)),), dtype), shape),
                    features, self.param_dtype) if self.use_bias else None)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return affine(x, kernel, bias) if self.use_bias else _contract(x, kernel, self.num_axes)


class Dense(DenseGeneral):
    """flax.linen.Dense (same parameters); `features` a positive int."""

    features: int = 0

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.features, int) or self.features < 1:
            raise ValueError(f"Dense needs a positive int of features, got {self.features!r}")


def _conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
          padding: tuple[tuple[int, int], ...]) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, strides, padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _patches(x: jax.Array, window: tuple[int, int], strides: tuple[int, int],
             padding: tuple[tuple[int, int], ...], out_hw: tuple[int, int]) -> jax.Array:
    """[B, Ho, Wo, kh * kw * C]: each output position's input window, in the kernel's
    (kh, kw, C) order, from kh * kw strided slices of the padded input."""
    (kh, kw), (sh, sw), (ho, wo) = window, strides, out_hw
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    b, c = x.shape[0], x.shape[-1]
    cols = [jax.lax.slice(xp, (0, i, j, 0), (b, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, c),
                          (1, sh, sw, 1)) for i in range(kh) for j in range(kw)]
    return jnp.concatenate(cols, axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array, strides: tuple[int, int],
           padding: tuple[tuple[int, int], ...]) -> jax.Array:
    """x [B, H, W, C] (NHWC) convolved with kernel [kh, kw, C, O] (HWIO), plus bias [O];
    `padding` explicit ((top, bottom), (left, right)). Kernel and bias gradients come from one
    [patches, 1]^T g product (see the module docstring)."""
    return _conv(x, kernel, strides, padding) + bias


def _conv2d_fwd(x, kernel, bias, strides, padding):
    return conv2d(x, kernel, bias, strides, padding), (x, kernel, bias)


def _conv2d_bwd(strides, padding, res, g):
    x, kernel, bias = res
    kh, kw, c, o = kernel.shape
    p = _patches(x, (kh, kw), strides, padding, g.shape[1:3]).reshape(-1, kh * kw * c)
    p = jnp.concatenate([p, jnp.ones((p.shape[0], 1), p.dtype)], axis=1)
    dkb = jax.lax.dot_general(p, g.reshape(-1, o), (((0,), (0,)), ((), ())),
                              preferred_element_type=jnp.float32)
    _, input_vjp = jax.vjp(lambda x: _conv(x, kernel, strides, padding), x)
    return (input_vjp(g)[0], dkb[:-1].reshape(kernel.shape).astype(kernel.dtype),
            dkb[-1].astype(bias.dtype))


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


class Conv(nn.Module):
    """flax.linen.Conv for 2-D NHWC inputs [..., H, W, C] (same parameters and initialisation),
    with a kernel gradient that stays fast inside loops (see the module docstring). Padding
    "SAME", "VALID" or explicit pairs; no dilation or feature groups."""

    features: int
    kernel_size: Sequence[int]
    strides: int | Sequence[int] = 1
    padding: str | Sequence[tuple[int, int]] = "SAME"
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        window = tuple(self.kernel_size)
        strides = ((self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides))
        if len(window) != 2 or len(strides) != 2:
            raise ValueError(f"Conv is 2-D: kernel_size {self.kernel_size!r} and strides "
                             f"{self.strides!r} need two entries each")
        if x.ndim < 4:
            raise ValueError(f"Conv needs [..., H, W, C] input, got shape {x.shape}")
        lead, x = x.shape[:-3], x.reshape(-1, *x.shape[-3:])
        kernel = self.param("kernel", self.kernel_init, (*window, x.shape[-1], self.features),
                            self.param_dtype)
        bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
                if self.use_bias else jnp.zeros((self.features,), self.param_dtype))
        padding = (tuple(jax.lax.padtype_to_pads(x.shape[1:3], window, strides, self.padding))
                   if isinstance(self.padding, str)
                   else tuple(tuple(int(v) for v in pair) for pair in self.padding))
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = conv2d(x, kernel, bias, strides, padding)
        return y.reshape(*lead, *y.shape[1:])


# queries x keys at or below which attention is computed by broadcasting (`few_key_attention`)
FEW_KEY_MAX_PRODUCT = 64


def few_key_attention(query: jax.Array, key: jax.Array, value: jax.Array,
                      mask: jax.Array | None = None) -> jax.Array:
    """`nn.dot_product_attention` (no dropout, same masking and softmax) as elementwise products
    and sums: query [..., Q, H, D], key/value [..., S, H, D], mask broadcastable to
    [..., H, Q, S] -> [..., Q, H, D]. For small Q x S only: it holds a [..., Q, S, H, D] product."""
    dtype = query.dtype
    query = query / jnp.sqrt(query.shape[-1]).astype(dtype)
    scores = jnp.sum(query[..., :, None, :, :] * key[..., None, :, :, :], axis=-1)  # [.., Q, S, H]
    scores = jnp.moveaxis(scores, -1, -3)  # [..., H, Q, S]
    if mask is not None:
        scores = jnp.where(mask, scores, jnp.finfo(dtype).min)
    weights = jnp.moveaxis(jax.nn.softmax(scores).astype(dtype), -3, -1)  # [..., Q, S, H]
    return jnp.sum(weights[..., None] * value[..., None, :, :, :], axis=-3)


class MultiHeadDotProductAttention(nn.Module):
    """flax.linen.MultiHeadDotProductAttention without dropout (query/key/value/out projections
    of the same shapes; `nn.dot_product_attention` in between, or `few_key_attention` where
    queries x keys <= FEW_KEY_MAX_PRODUCT)."""

    num_heads: int
    dtype: Any = None

    @nn.compact
    def __call__(self, inputs_q: jax.Array, inputs_kv: jax.Array | None = None,
                 mask: jax.Array | None = None) -> jax.Array:
        inputs_kv = inputs_q if inputs_kv is None else inputs_kv
        d = inputs_q.shape[-1]
        if d % self.num_heads:
            raise ValueError(f"width {d} is not divisible by {self.num_heads} heads")
        heads = (self.num_heads, d // self.num_heads)
        proj = lambda name, x: DenseGeneral(heads, dtype=self.dtype, name=name)(x)  # noqa: E731
        q, k, v = proj("query", inputs_q), proj("key", inputs_kv), proj("value", inputs_kv)
        if inputs_q.shape[-2] * inputs_kv.shape[-2] <= FEW_KEY_MAX_PRODUCT:
            out = few_key_attention(q, k, v, mask)
        else:
            out = nn.dot_product_attention(q, k, v, mask=mask, dtype=self.dtype)
        return DenseGeneral(d, num_axes=2, dtype=self.dtype, name="out")(out)
