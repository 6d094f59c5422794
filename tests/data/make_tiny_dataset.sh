#!/usr/bin/env bash
# Rebuilds the committed debug dataset (tests/data/tiny_maniskill) with the real pipeline:
# the `tiny:debug` data config (1 in-domain + 1 out-of-domain scene, the four tasks, 1 episode each).
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
.venv/bin/python -m experiments.collect_data --config=experiments/configs/tiny.py:debug \
  --workdir="$work" < /dev/null
rm -rf tests/data/tiny_maniskill
cp -r "$work/collect_data/tfds/roboscape_maniskill" tests/data/tiny_maniskill
cp "$work/collect_data/card.md" tests/data/tiny_maniskill/
echo "rebuilt tests/data/tiny_maniskill from $work"
