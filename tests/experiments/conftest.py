"""Shared set-up of the stage tests: a pipeline workdir holding the committed debug dataset."""

import os

from experiments.stages.tokenizer import DATASET_SUBDIR
from tests.conftest import REPO_ROOT

DEBUG_DATASET = os.path.join(REPO_ROOT, "tests", "data", "tiny_maniskill", "1.0.0")


def debug_workdir(tmp_path_factory):
    """A fresh pipeline workdir whose collect_data dataset is the committed debug dataset."""
    root = tmp_path_factory.mktemp("pipeline")
    dataset = root / DATASET_SUBDIR
    dataset.parent.mkdir(parents=True)
    os.symlink(DEBUG_DATASET, dataset)
    return root
