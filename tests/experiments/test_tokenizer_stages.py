"""The tokenizer stages on the committed debug dataset: train, score IND and OOD, cache tokens."""

import json
import os

import numpy as np
import pytest

from experiments.configs import tiny
from experiments.stages import tokenizer as stages
from roboscape_jax.tokenizer.tokenize import load_tokens
from tests.conftest import REPO_ROOT

TINY = os.path.join(REPO_ROOT, "tests", "data", "tiny_maniskill", "1.0.0")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    dataset = root / stages.DATASET_SUBDIR
    dataset.parent.mkdir(parents=True)
    os.symlink(TINY, dataset)
    return root


def test_train_then_tokenize(workdir):
    config = tiny.get_config("debug")
    results = stages.run_train_tokenizer(config, str(workdir / "train_tokenizer"))
    assert set(results) == {"ind", "ood"}
    for split in ("ind", "ood"):
        assert 0.0 < results[split]["psnr"] < 60.0
        assert 0.0 < results[split]["code_usage"] <= 1.0
    with open(workdir / "train_tokenizer" / "eval_ood" / "metrics.json") as f:
        assert json.load(f)["psnr"] == results["ood"]["psnr"]

    counts = stages.run_tokenize_dataset(config, str(workdir / "tokenize_dataset"))
    assert {k: v["written"] for k, v in counts.items()} == {"train": 3, "val": 1, "ood": 4}
    cache = workdir / "tokenize_dataset" / "ood"
    episode_id = sorted(p[:-4] for p in os.listdir(cache) if p.endswith(".npz"))[0]
    with np.load(cache / f"{episode_id}.npz") as data:
        tokens, actions, done = data["tokens"], data["actions"], data["done"]
        assert data["text"].shape == (32, 384) and data["text_mask"].sum() > 3
    assert tokens.shape == (len(actions), 16, 8) and tokens.dtype == np.int32
    assert actions.shape[1] == 7 and done[-1] == 1.0 and done[0] == 0.0
    assert np.array_equal(load_tokens(str(cache), episode_id), tokens)
    again = stages.run_tokenize_dataset(config, str(workdir / "tokenize_dataset"))
    assert again["ood"] == {"written": 0, "skipped": 4}
