"""MAGVIT-2 style frame tokenizer: conv encoder, lookup-free quantization (LFQ), conv decoder.

Yu et al. 2023, "Language model beats diffusion: tokenizer is key to visual generation",
arXiv:2310.05737, Sec. 3.1. Each latent position holds K numbers; LFQ keeps only their signs, so the
codebook is the 2^K corners of {-1, +1}^K and needs no lookup. The code index of a corner reads its
bits LSB first: index = sum_k [q_k > 0] * 2^k. For a large K the bits split into `num_factors`
contiguous groups ("sub-codes"), so a world model can predict `num_factors` factored softmaxes of
2^(K / num_factors) classes instead of one of 2^K (the paper's 2^18 = 2 x 2^9).

Shapes: frames [B, H, W, 3] in [-1, 1]; latents and quantized codes [B, h, w, K] with
h = H / f, w = W / f and f = stem_factor * 2^(len(channel_mults) - 1); indices [B, h, w] int32.

Reference conditioning (`reference_conditioning=True`, after iVideoGPT's context-conditioned
compressive tokenizer, Wu et al. 2024, arXiv:2405.15223): the encoder also sees a reference frame
(the episode's first real frame, which every user of the tokens has: the env's reset frame, the
simulator episode's first render, the dataset episode's first step) and the decoder reads its
features at every resolution. The static scene (table, container, robot base) then comes from the
reference at full resolution, and the codes only have to carry what differs from it.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def lfq_quantize(z: jax.Array) -> jax.Array:
    """q = sign(z) in {-1, +1} (0 maps to +1), with a straight-through gradient dq/dz = 1.

    Args: z [..., K] float latents. Returns: [..., K], values exactly -1 or +1.
    """
    q = jnp.where(z >= 0, 1.0, -1.0).astype(z.dtype)
    return z + jax.lax.stop_gradient(q - z)


def hysteresis_quantize(latents: jax.Array, margin: float) -> jax.Array:
    """Sign codes of a frame sequence that keep the previous frame's bit while |z| < margin.

    LFQ bits whose latent sits near zero flip between frames on pixel noise; the world model
    cannot predict such flips, and either sign decodes about equally well (|z| is small). Keeping
    the previous sign inside the margin (margin 0 = plain `lfq_quantize`) cuts those flips: on the
    tiny tokenizer margin 0.15 removes about a third of the token changes per step for +1-2%
    reconstruction LPIPS (docs/performance_history.md). The first frame is quantized plainly.

    Args: latents [T, ..., K] of consecutive frames. Returns: [T, ..., K] codes in {-1, +1}.
    """
    plain = jnp.where(latents >= 0, 1.0, -1.0).astype(latents.dtype)

    def step(previous, frame):
        z, q = frame
        code = jnp.where(jnp.abs(z) < margin, previous, q)
        return code, code

    _, rest = jax.lax.scan(step, plain[0], (latents[1:], plain[1:]))
    return jnp.concatenate([plain[:1], rest])


def bits_to_index(q: jax.Array) -> jax.Array:
    """Code index of {-1, +1} codes, LSB first: sum_k [q_k > 0] 2^k. [..., K] -> [...] int32."""
    num_bits = q.shape[-1]
    if num_bits > 30:
        raise ValueError(f"at most 30 bits fit an int32 code index, got {num_bits}")
    basis = 2 ** jnp.arange(num_bits, dtype=jnp.int32)
    return jnp.sum((q > 0).astype(jnp.int32) * basis, axis=-1)


def index_to_bits(index: jax.Array, num_bits: int) -> jax.Array:
    """Inverse of `bits_to_index`: [...] int -> [..., num_bits] float32 in {-1, +1}."""
    bits = (index[..., None] >> jnp.arange(num_bits, dtype=jnp.int32)) & 1
    return (2 * bits - 1).astype(jnp.float32)


def index_to_subcodes(index: jax.Array, num_bits: int, num_factors: int) -> jax.Array:
    """Splits full codes into sub-codes of num_bits / num_factors bits each, lowest bits first.

    index = sum_j sub_j * (2^(num_bits / num_factors))^j. [...] -> [..., num_factors] int32.
    """
    bits_per_factor = _bits_per_factor(num_bits, num_factors)
    shifts = bits_per_factor * jnp.arange(num_factors, dtype=jnp.int32)
    return (index[..., None] >> shifts) & (2**bits_per_factor - 1)


def subcodes_to_index(subcodes: jax.Array, num_bits: int) -> jax.Array:
    """Inverse of `index_to_subcodes`: [..., num_factors] int -> [...] int32 full codes."""
    num_factors = subcodes.shape[-1]
    shifts = _bits_per_factor(num_bits, num_factors) * jnp.arange(num_factors, dtype=jnp.int32)
    return jnp.sum(subcodes.astype(jnp.int32) << shifts, axis=-1)


def _bits_per_factor(num_bits: int, num_factors: int) -> int:
    if num_factors < 1 or num_bits % num_factors:
        raise ValueError(f"num_bits={num_bits} must split evenly into num_factors={num_factors}")
    return num_bits // num_factors


def space_to_depth(x: jax.Array, factor: int) -> jax.Array:
    """[B, H, W, C] -> [B, H / f, W / f, f * f * C]: each f x f pixel block becomes one position
    (pixel unshuffle); `depth_to_space` inverts it exactly."""
    b, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(f"frames {h}x{w} do not split into {factor}x{factor} blocks")
    x = x.reshape(b, h // factor, factor, w // factor, factor, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // factor, w // factor, factor**2 * c)


def depth_to_space(x: jax.Array, factor: int) -> jax.Array:
    """[B, h, w, f * f * C] -> [B, h * f, w * f, C] (pixel shuffle), the inverse of
    `space_to_depth`."""
    b, h, w, c = x.shape
    x = x.reshape(b, h, w, factor, factor, c // factor**2)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * factor, w * factor, c // factor**2)


def _group_norm(features: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(8, features))


class ResBlock(nn.Module):
    """x + conv(swish(norm(conv(swish(norm(x)))))), with a 1x1 projection when widths differ."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.Conv(self.features, (3, 3))(nn.swish(_group_norm(x.shape[-1])(x)))
        h = nn.Conv(self.features, (3, 3))(nn.swish(_group_norm(self.features)(h)))
        if x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1))(x)
        return x + h


class Encoder(nn.Module):
    """[B, H, W, 3] -> [B, H/f, W/f, out_dim]; one stride-2 conv between consecutive levels."""

    channels: int = 32  # width of level 0; level i has channels * channel_mults[i]
    channel_mults: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 1  # per level
    out_dim: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(self.channels * self.channel_mults[0], (3, 3))(x)
        for level, mult in enumerate(self.channel_mults):
            for _ in range(self.num_res_blocks):
                x = ResBlock(self.channels * mult)(x)
            if level < len(self.channel_mults) - 1:
                width = self.channels * self.channel_mults[level + 1]
                x = nn.Conv(width, (4, 4), strides=(2, 2))(x)
        x = ResBlock(x.shape[-1])(x)
        return nn.Conv(self.out_dim, (1, 1))(nn.swish(_group_norm(x.shape[-1])(x)))


class ReferenceEncoder(nn.Module):
    """Reference frame [B, H, W, 3] -> its features at every level of the decoder, finest first:
    level i is [B, H / 2^i, W / 2^i, channels * channel_mults[i]]."""

    channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2, 4)

    @nn.compact
    def __call__(self, r: jax.Array) -> tuple[jax.Array, ...]:
        x = nn.Conv(self.channels * self.channel_mults[0], (3, 3))(r)
        features = []
        for level, mult in enumerate(self.channel_mults):
            x = ResBlock(self.channels * mult)(x)
            features.append(x)
            if level < len(self.channel_mults) - 1:
                x = nn.Conv(self.channels * self.channel_mults[level + 1], (4, 4),
                            strides=(2, 2))(x)
        return tuple(features)


class Decoder(nn.Module):
    """[B, h, w, K] -> [B, h*f, w*f, 3]; nearest-neighbour x2 upsampling + conv between levels.
    With `reference` features (`ReferenceEncoder`), each level adds a 1x1 projection of its
    level's reference features before its blocks. With `reference_image` (the reference frame
    itself, [B, H, W, 3] in [-1, 1]) the last conv also gives a per-pixel gate that copies the
    reference's pixel: out = g * reference + (1 - g) * rgb, so the static scene is copied, not
    redrawn."""

    channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 1
    out_channels: int = 3

    @nn.compact
    def __call__(self, q: jax.Array, reference: tuple[jax.Array, ...] | None = None,
                 reference_image: jax.Array | None = None) -> jax.Array:
        x = nn.Conv(self.channels * self.channel_mults[-1], (3, 3))(q)
        x = ResBlock(x.shape[-1])(x)
        for level in reversed(range(len(self.channel_mults))):
            if reference is not None:
                x = x + nn.Conv(x.shape[-1], (1, 1), name=f"reference_{level}")(
                    nn.swish(_group_norm(reference[level].shape[-1])(reference[level])))
            for _ in range(self.num_res_blocks):
                x = ResBlock(self.channels * self.channel_mults[level])(x)
            if level > 0:
                b, h, w, c = x.shape
                x = jax.image.resize(x, (b, 2 * h, 2 * w, c), method="nearest")
                x = nn.Conv(self.channels * self.channel_mults[level - 1], (3, 3))(x)
        x = nn.swish(_group_norm(x.shape[-1])(x))
        if reference_image is None:
            return nn.Conv(self.out_channels, (3, 3))(x)
        out = nn.Conv(4, (3, 3), name="rgb_and_copy_gate")(x)
        gate = jax.nn.sigmoid(out[..., 3:])
        return gate * reference_image + (1.0 - gate) * out[..., :3]


class FrameTokenizer(nn.Module):
    """Encoder -> LFQ -> decoder. `__call__(x) -> (reconstruction, aux)` with aux keys
    `latents` [B, h, w, K], `codes` [B, h, w, K] in {-1, +1} and `indices` [B, h, w] int32."""

    channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 1
    num_bits: int = 10  # K: codebook size 2^K
    num_factors: int = 1  # sub-codes of K / num_factors bits each (for factored logits)
    # Encode and decode given the episode's first frame (module docstring); every method then
    # takes `reference` [B, H, W, 3] in [-1, 1].
    reference_conditioning: bool = False
    # With reference conditioning: the decoder's last layer also gates a copy of the reference's
    # pixels (`Decoder`).
    reference_copy_gate: bool = False
    # > 1: the encoder reads, and the decoder writes, frames folded into stem_factor x
    # stem_factor pixel blocks (`space_to_depth`), so no convolution runs at full resolution
    # (the narrow full-resolution convolutions are the CPU's slowest; docs/performance_history.md)
    stem_factor: int = 1

    def setup(self):
        _bits_per_factor(self.num_bits, self.num_factors)
        self.encoder = Encoder(self.channels, self.channel_mults, self.num_res_blocks,
                               self.num_bits)
        self.decoder = Decoder(self.channels, self.channel_mults, self.num_res_blocks,
                               3 * self.stem_factor**2)
        if self.reference_copy_gate and not self.reference_conditioning:
            raise ValueError("reference_copy_gate needs reference_conditioning=True")
        if self.stem_factor < 1:
            raise ValueError(f"stem_factor must be >= 1, got {self.stem_factor}")
        if self.stem_factor > 1 and self.reference_conditioning:
            raise ValueError("stem_factor > 1 is not implemented for reference-conditioned "
                             "tokenizers (reference_conditioning=True): set model.stem_factor=1 "
                             "(`tiny` before the stem: channels=16, "
                             "channel_mults=(1, 2, 4, 8))")
        if self.reference_conditioning:
            self.reference_encoder = ReferenceEncoder(self.channels, self.channel_mults)

    @property
    def downsample_factor(self) -> int:
        return self.stem_factor * 2 ** (len(self.channel_mults) - 1)

    def _check_reference(self, reference: jax.Array | None, shape: tuple[int, ...] | None):
        if self.reference_conditioning and reference is None:
            raise ValueError("this tokenizer is reference-conditioned (reference_conditioning="
                             "True): pass `reference`, the episode's first frame [B, H, W, 3]")
        if not self.reference_conditioning and reference is not None:
            raise ValueError("this tokenizer takes no reference frame "
                             "(reference_conditioning=False)")
        if reference is not None and shape is not None and reference.shape != shape:
            raise ValueError(f"reference frames {reference.shape} must match the frames "
                             f"{shape}")

    def _reference_features(self, reference: jax.Array | None):
        return None if reference is None else self.reference_encoder(reference)

    def encode(self, x: jax.Array, reference: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array]:
        """[B, H, W, 3] in [-1, 1] -> (latents, codes), both [B, h, w, K]."""
        self._check_reference(reference, x.shape)
        if self.stem_factor > 1:
            x = space_to_depth(x, self.stem_factor)
        z = self.encoder(x if reference is None else jnp.concatenate([x, reference], -1))
        return z, lfq_quantize(z)

    def decode_codes(self, codes: jax.Array, reference: jax.Array | None = None) -> jax.Array:
        """[B, h, w, K] codes in {-1, +1} -> [B, H, W, 3] frames in (about) [-1, 1]."""
        self._check_reference(reference, None)
        out = self.decoder(codes, self._reference_features(reference),
                           reference if self.reference_copy_gate else None)
        return depth_to_space(out, self.stem_factor) if self.stem_factor > 1 else out

    def decode_indices(self, indices: jax.Array, reference: jax.Array | None = None) -> jax.Array:
        """[B, h, w] int code indices -> [B, H, W, 3] frames in (about) [-1, 1]."""
        return self.decode_codes(index_to_bits(indices, self.num_bits), reference)

    def __call__(self, x: jax.Array, reference: jax.Array | None = None
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
        z, q = self.encode(x, reference)
        aux = {"latents": z, "codes": q, "indices": bits_to_index(q)}
        return self.decode_codes(q, reference), aux


def init_params(model: FrameTokenizer, rng: jax.Array, frame_height: int = 128,
                frame_width: int = 64):
    """Fresh params of `model` from a zero frame (and a zero reference frame when the model is
    reference-conditioned)."""
    x = jnp.zeros((1, frame_height, frame_width, 3))
    return jax.jit(model.init)(rng, x, x if model.reference_conditioning else None)


def create_model(model_config) -> FrameTokenizer:
    """The tokenizer of a `config.model` section (see experiments/configs/tokenizer.py)."""
    return FrameTokenizer(channels=model_config.channels,
                          channel_mults=tuple(model_config.channel_mults),
                          num_res_blocks=model_config.num_res_blocks,
                          num_bits=model_config.num_bits,
                          num_factors=model_config.num_factors,
                          reference_conditioning=bool(
                              model_config.get("reference_conditioning", False)),
                          reference_copy_gate=bool(model_config.get("reference_copy_gate",
                                                                    False)),
                          stem_factor=int(model_config.get("stem_factor", 1)))
