#!/usr/bin/env bash
# Every device measurement of one GPU session, as one script (about 7 minutes on an H100):
#   1. benchmark: training strategies side by side (vmap vs lax.map vs loop), scoring;
#   2. the `gpu` config of kjv_gpt end to end (train -> score -> attack -> report);
#   3. diagnostics and the shadow-count sweep on that run (no retraining);
#   4. attack timing at S=64, N=20,000, L=128 on synthetic statistics.
# Run from the repository root; PHASES selects steps. Results: $OUT/session.tar.gz.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c 'import jax, flax; print("jax", jax.__version__, "flax", flax.__version__, jax.devices())'
mkdir -p "$OUT/s"
run() {  # run NAME TIMEOUT CMD...: log to $OUT/s/NAME.log, never abort the script
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/s/$name.log" 2>&1
  echo "== $name: exit $? in $((SECONDS - t0)) s"
  grep -v -E "^[WI][0-9]{4} " "$OUT/s/$name.log" | tail -n 40
}
PHASES=${PHASES:-bench_train audit diagnose study bench_attack}
has() { [[ " $PHASES " == *" $1 "* ]]; }
has bench_train && run bench_train 150 python3 -m experiments.benchmark --config=configs/kjv_gpt.py:gpu \
  --strategies=vmap,map,loop --chunk_steps=25 --timed_chunks=2 --stages=train,score \
  --out="$OUT/s/bench_train.json"
if has audit; then
  run audit "${AUDIT_TIMEOUT:-230}" python3 -m experiments.run --config=configs/kjv_gpt.py:gpu --workdir=runs/gpu
  grep -E "stage seconds|step [0-9]+/" "$OUT/s/audit.log" | tail -n 4
  cp -r runs/gpu/results "$OUT/s/audit_results" 2>/dev/null
  rm -rf "$OUT/s/audit_results/scores" "$OUT/s/audit_results/evidence"
  cp runs/gpu/metrics.jsonl runs/gpu/train_done.json runs/gpu/stats/done.json "$OUT/s/" 2>/dev/null
fi
has diagnose && run diagnose 40 python3 -m experiments.diagnose --workdir=runs/gpu
if has study; then
  run study 150 python3 -m experiments.sweep --config=configs/study_shadows.py:gpu \
    --workdir=runs/study_shadows_gpu
  cp runs/study_shadows_gpu/sweep.csv runs/study_shadows_gpu/sweep.png "$OUT/s/" 2>/dev/null
  python3 -m experiments.diagnose --workdir="$(ls -d runs/study_shadows_gpu/train-* | head -1)" \
    >"$OUT/s/study_diagnose.log" 2>&1
fi
has bench_attack && run bench_attack 100 python3 -m experiments.benchmark --config=configs/kjv_gpt.py:gpu \
  --stages=attack --attack_shape=64,20000,128 --out="$OUT/s/bench_attack.json"
tar -czf "$OUT/session.tar.gz" -C "$OUT" s && rm -rf "$OUT/s"
ls -la "$OUT"
