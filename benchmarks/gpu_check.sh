#!/usr/bin/env bash
# The GPU check of issue 11, prepared for one CUDA GPU (written on a machine without one: NOT yet run).
#
#   benchmarks/gpu_check.sh DATA_ROOT [OUT]      e.g. benchmarks/gpu_check.sh ../shared/data runs/gpu_check
#
# 1. the paper recipe at full length (classifier32, 35 + 35 and 150 + 50 epochs) on MNIST and CIFAR10 trial 0;
# 2. the fast recipes (resnet9), all five trials, on MNIST, CIFAR10 and TinyImageNet (the data this project has;
#    SVHN and CIFAR+10/+50 need files it does not have);
# each with CAC and cross-entropy, then `compare` (cross-entropy by max softmax and by max logit), and the
# tables of benchmarks/results_tables.py in OUT/tables.md. Every command has its own time limit so the whole
# script stays near 10 minutes; a command that runs out is reported in the tables file and its run folder
# can be resumed by running the script again. Precision: the default (bf16 autocast on CUDA, float32 logits).
set -uo pipefail
DATA=${1:?usage: benchmarks/gpu_check.sh DATA_ROOT [OUT]}
OUT=${2:-runs/gpu_check}
PY=${PYTHON:-python}
mkdir -p "$OUT"
TABLES="$OUT/tables.md"
{ echo "# GPU check ($(date -u +%F' '%T) UTC)"; echo; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  "$PY" -c "import torch, classanchor; print('torch', torch.__version__, '| classanchor', classanchor.__version__)"
  echo; } > "$TABLES"

run() {  # run LIMIT_SECONDS NAME DATASET RECIPE TRIALS
  local limit=$1 name=$2 dataset=$3 recipe=$4 trials=$5 start=$SECONDS
  timeout "$limit" "$PY" -m classanchor benchmark "$dataset" --data-root "$DATA" --trials "$trials" \
      --methods cac,ce --recipe "$recipe" --device cuda --out "$OUT/$name" --no-progress > "$OUT/$name.log" 2>&1
  local rc=$?
  timeout 120 "$PY" -m classanchor compare "$dataset" --data-root "$DATA" --trials "$trials" --recipe "$recipe" \
      --device cuda --ce-detectors msp,max_logit --out "$OUT/$name" --no-progress >> "$OUT/$name.log" 2>&1
  echo "## $name: exit $rc after $((SECONDS - start)) s (limit $limit s)" >> "$TABLES"
  if compgen -G "$OUT/$name/trial*/*/result.json" > /dev/null; then  # finished jobs (compare.json if it ran)
    "$PY" benchmarks/results_tables.py "$OUT/$name" >> "$TABLES"
  else
    echo "no finished job: see $OUT/$name.log" >> "$TABLES"
  fi
}

run 150 mnist_paper MNIST paper 0
run 210 cifar10_paper CIFAR10 paper 0
run 60 mnist_fast MNIST fast 0-4
run 120 cifar10_fast CIFAR10 fast 0-4
run 120 tinyimagenet_fast TinyImageNet fast 0-4
cat "$TABLES"
