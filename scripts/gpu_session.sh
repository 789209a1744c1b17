#!/usr/bin/env bash
# Every device measurement of one GPU session, as one script. PHASES selects steps
# (default: the performance set, about 6 minutes on an H100):
#   bench_train    training benchmark of the gpu config, vmap vs loop, with a kernel profile;
#   bench_attack   all attacks, leave-one-out over 64 targets at N=20,000, L=128 (synthetic);
#   bench_xla      the same training with XLA attention instead of cuDNN's, profiled;
#   bench_baseline the training benchmark of an older checkout in ./bench_baseline, made with
#                  mkdir bench_baseline && git archive REV seqmia_jax experiments configs |
#                  tar -x -C bench_baseline   (untracked, not ignored, so the device gets it);
#   bench_wide     width 512 instead of 256, profiled;
#   audit, diagnose, study, canaries: end-to-end runs (see docs/study.md; canaries has not
#                  run on a GPU yet, CANARY_TIMEOUT sets its limit);
#   secrets        the secrets audit (configs/kjv_secrets.py:gpu, SECRETS_CONFIG to change it)
#                  end to end, with diagnose: exposure, extraction and the ceiling at the
#                  secret positions. SECRETS_CONFIG=configs/kjv_secrets.py:tiny tries it on a CPU;
#   dp             the DP study (configs/study_dp.py:gpu; DP_CONFIG to change it) and its table,
#                  with DP-SGD's training cost beside normal training (benchmark +dp labels);
#   finetune       full fine-tuning and LoRA from one pretrained BPE base
#                  (configs/kjv_finetune.py:gpu; FINETUNE_CONFIG to change it) as one sweep,
#                  its side-by-side table, and diagnose on the full point. Needs the
#                  tokenizers wheel in .whl/ (the GPU image lacks it);
#   sparse_secrets the second study's largest run: the secrets audit at L = 256 with the
#                  sparse estimators (configs/study_sparse.py:secrets, 64 models) as a sweep
#                  over the two target halves (16,384 negatives each: FPR 1e-4 resolved on
#                  the held-out half), its held-out table, and diagnose's ceilings.
#                  SPARSE_CONFIG=configs/study_sparse.py:secrets-tiny tries it on a CPU.
# Run from the repository root. Results: $OUT/session.tar.gz.
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
CONFIG=${CONFIG:-configs/kjv_gpt.py:gpu}  # configs/kjv_gpt.py:tiny tries the script on a CPU
PHASES=${PHASES:-bench_train bench_attack bench_wide bench_xla bench_baseline}
has() { [[ " $PHASES " == *" $1 "* ]]; }
bench() {  # bench NAME TIMEOUT ARGS...: training benchmark of the gpu config
  local name=$1 limit=$2; shift 2
  run "$name" "$limit" python3 -m experiments.benchmark --config="$CONFIG" \
    --stages=train --chunk_steps=20 --timed_chunks=2 --out="$OUT/s/$name.json" "$@"
}
has bench_train && bench bench_train 170 --strategies=vmap,loop --profile_dir=/tmp/prof_train
has bench_attack && run bench_attack 170 python3 -m experiments.benchmark --config="$CONFIG" \
  --stages=attack --attack_shape="${ATTACK_SHAPE:-64,20000,128}" --attack_repeats=2 \
  --out="$OUT/s/bench_attack.json"
has bench_xla && bench bench_xla 90 --strategies=vmap --config.model.attention=xla \
  --profile_dir=/tmp/prof_xla
if has bench_baseline && [[ -d bench_baseline ]]; then  # the code before this session's changes
  (cd bench_baseline && run bench_baseline 90 python3 -m experiments.benchmark \
    --config="$CONFIG" --stages=train --chunk_steps=20 --timed_chunks=2 \
    --strategies=vmap --out="$OUT/s/bench_baseline.json")
fi
has bench_wide && bench bench_wide 90 --strategies=vmap --config.model.embed_dim=512 \
  --config.model.num_heads=8 --profile_dir=/tmp/prof_wide
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
if has canaries; then
  run canaries "${CANARY_TIMEOUT:-300}" python3 -m experiments.sweep \
    --config=configs/study_canaries.py:gpu --workdir=runs/study_canaries_gpu
  cp runs/study_canaries_gpu/sweep.csv "$OUT/s/canaries_sweep.csv" 2>/dev/null
fi
if has secrets; then
  SECRETS_CONFIG=${SECRETS_CONFIG:-configs/kjv_secrets.py:gpu}
  run secrets "${SECRETS_TIMEOUT:-300}" python3 -m experiments.run --config="$SECRETS_CONFIG" \
    --workdir=runs/secrets_gpu
  grep -E "stage seconds|step [0-9]+/" "$OUT/s/secrets.log" | tail -n 4
  python3 -m experiments.diagnose --workdir=runs/secrets_gpu --statistics=loss \
    >"$OUT/s/secrets_diagnose.log" 2>&1
  mkdir -p "$OUT/s/secrets_results"
  cp runs/secrets_gpu/results/results.md runs/secrets_gpu/results/results.json \
    runs/secrets_gpu/results/diagnostics.json runs/secrets_gpu/results/exposure.png \
    "$OUT/s/secrets_results/" 2>/dev/null
fi
if has dp; then
  DP_CONFIG=${DP_CONFIG:-configs/study_dp.py:gpu}
  run dp_bench 120 python3 -m experiments.benchmark --config="$DP_CONFIG" \
    --stages=train --strategies=vmap,vmap+dp,vmap+dp/8 --chunk_steps=10 --timed_chunks=2 \
    --out="$OUT/s/dp_bench.json"
  run dp "${DP_TIMEOUT:-400}" python3 -m experiments.sweep --config="$DP_CONFIG" --workdir=runs/study_dp_gpu
  python3 -m experiments.study.dp_table runs/study_dp_gpu >"$OUT/s/dp_table.md" 2>&1
fi
if has finetune; then
  FINETUNE_CONFIG=${FINETUNE_CONFIG:-configs/kjv_finetune.py:gpu}
  run finetune "${FINETUNE_TIMEOUT:-400}" python3 -m experiments.sweep \
    --config="$FINETUNE_CONFIG" --workdir=runs/finetune_gpu --config.base.dir=runs/finetune_gpu/base
  python3 -m experiments.study.finetune_table runs/finetune_gpu >"$OUT/s/finetune_table.md" 2>&1
  cp runs/finetune_gpu/base/base.json runs/finetune_gpu/sweep.csv "$OUT/s/" 2>/dev/null
  python3 -m experiments.diagnose --workdir="$(ls -d runs/finetune_gpu/train-* | head -1)" \
    --statistics=loss >"$OUT/s/finetune_diagnose.log" 2>&1
fi
if has sparse_secrets; then
  SPARSE_CONFIG=${SPARSE_CONFIG:-configs/study_sparse.py:secrets}
  run sparse_secrets "${SPARSE_TIMEOUT:-480}" python3 -m experiments.sweep \
    --config="$SPARSE_CONFIG" --workdir=runs/sparse_secrets
  grep -E "stage seconds|step [0-9]+/" "$OUT/s/sparse_secrets.log" | tail -n 4
  python3 -m experiments.study.heldout_table runs/sparse_secrets/sweep.csv \
    | tee "$OUT/s/sparse_secrets_heldout.md"
  python3 -m experiments.diagnose --workdir="$(ls -d runs/sparse_secrets/train-* | head -1)" \
    --output="$OUT/s/sparse_secrets_diagnostics.json" >"$OUT/s/sparse_secrets_diagnose.log" 2>&1
  cp runs/sparse_secrets/sweep.csv "$OUT/s/sparse_secrets_sweep.csv" 2>/dev/null
fi
tar -czf "$OUT/session.tar.gz" -C "$OUT" s && rm -rf "$OUT/s"
ls -la "$OUT"
