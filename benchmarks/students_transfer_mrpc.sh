#!/usr/bin/env bash
# MRPC's 3-layer students on a teacher-labelled transfer set (benchmarks/results/quality-mrpc/transfer/).
#
# The TS row of the MRPC matrix (quality_mrpc.sh) learns from 3,667 labelled pairs; TinyBERT's
# answer for GLUE's small tasks is a larger transfer set labelled by the teacher. Same teacher as
# the matrix (its models/teacher, by default), same student settings as its recipe
# (recipes/quality-mrpc-cpu.yaml: lr 1e-4, batch 32, bf16, length-grouped, checkpoint on dev
# accuracy), and for each entry of TRANSFERS a set from `slimbert augment`:
#
#   cN-pP    N word-replaced copies of every training pair (the teacher's embedding neighbours,
#            whole words, each replaced with probability P) plus the pairs symmetry and
#            transitivity imply, every row labelled by the teacher, no dev sentence in it
#
# Students, for each seed and set (METHODS picks):
#   kd        Hinton (T 2, alpha 0.5) on the training pairs and the set
#   tinybert  intermediate-layer distillation on them (1 epoch), then the prediction stage
#
# Every run is capped at about 4,500 optimiser steps (EPOCHS per set), evaluated every 230 steps
# with patience 4. Each finished model's slimbert.json and wall-clock go to $RESULTS/cells/ at
# once, and a rerun skips every finished one; `python benchmarks/summarize_quality_mrpc.py`
# puts them in the MRPC page. Models live outside the checkout.
#
# Usage, from the repository root with the venv active:
#   bash benchmarks/students_transfer_mrpc.sh
#   SEEDS="1" TRANSFERS="c2-p0.1" METHODS=kd bash benchmarks/students_transfer_mrpc.sh
#   TRANSFER_DIR=~/slimbert-runs/textcnn-transfer-mrpc bash ...   # reuse sets built there
set -euo pipefail
GLUE=${GLUE:-../shared/data/glue}
RUNS=${RUNS:-$HOME/slimbert-runs/quality-mrpc-transfer}
RESULTS=${RESULTS:-benchmarks/results/quality-mrpc/transfer}
TEACHER=${TEACHER:-$HOME/slimbert-runs/quality-mrpc/models/teacher}
TRANSFER_DIR=${TRANSFER_DIR:-$RUNS}
SEEDS=${SEEDS:-1 2 3}
TRANSFERS=${TRANSFERS:-c2-p0.1 c8-p0.4}
METHODS=${METHODS:-kd tinybert}
DATA=(--train "$GLUE/MRPC/train.tsv" --eval "$GLUE/MRPC/dev.tsv" --max-length 128)
FAST=(--layers 3 --batch-size 32 --lr 1e-4 --mixed-precision auto --group-by-length
      --metric accuracy --eval-every 230 --patience 4 --no-progress)
mkdir -p "$RUNS" "$TRANSFER_DIR" "$RESULTS/cells"

run() {  # run NAME OUT command...   (skips a finished model; records its wall-clock)
  local name=$1 out=$2
  shift 2
  if [ -f "$out/slimbert.json" ]; then echo "[mrpc-transfer] $name: done, skipped"; return; fi
  echo "[mrpc-transfer] $name: $(date -u +%H:%M:%S) start"
  local start seconds
  start=$(date +%s)
  "$@" --out "$out" > "$RUNS/$name.log" 2>&1 || { echo "[mrpc-transfer] $name: FAILED, see $RUNS/$name.log"; return 1; }
  seconds=$(( $(date +%s) - start ))
  cp "$out/slimbert.json" "$RESULTS/cells/$name.json"
  printf '{"name": "%s", "wall_seconds": %d, "command": "%s", "machine": "%s", "cores": %d}\n' \
    "$name" "$seconds" "$*" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
    "$(nproc)" > "$RESULTS/cells/$name.budget.json"
  echo "[mrpc-transfer] $name: $(date -u +%H:%M:%S) done in ${seconds}s"
}

epochs_for() {  # about 4,500 steps over 3,667 pairs plus the set's rows
  python - "$1" <<'PY'
import sys
rows = 3667 + sum(1 for _ in open(sys.argv[1], encoding="utf-8"))
print(round(max(1.0, 4500 * 32 / rows), 1))
PY
}

for variant in $TRANSFERS; do
  transfer=$TRANSFER_DIR/transfer-$variant.jsonl
  if [ ! -f "$transfer" ]; then
    copies=${variant%%-*}
    words=(--copies "${copies#c}")
    [[ $variant == *-p* ]] && words+=(--prob "${variant##*-p}")
    echo "[mrpc-transfer] transfer-$variant: $(date -u +%H:%M:%S) start"
    slimbert augment --teacher "$TEACHER" "${DATA[@]}" "${words[@]}" --pair-rules --out "$transfer" \
      > "$RUNS/transfer-$variant.log" 2>&1
  fi
  cp "${transfer%.jsonl}.manifest.json" "$RESULTS/cells/transfer-$variant.manifest.json"
done

for seed in $SEEDS; do
  for variant in $TRANSFERS; do
    transfer=$TRANSFER_DIR/transfer-$variant.jsonl
    epochs=$(epochs_for "$transfer")
    common=(--teacher "$TEACHER" "${DATA[@]}" "${FAST[@]}" --seed "$seed" --transfer "$transfer")
    for method in $METHODS; do
      name=$method-3L-transfer-$variant-seed$seed
      case $method in
        kd) run "$name" "$RUNS/$name" slimbert compress kd "${common[@]}" --epochs "$epochs" \
              --temperature 2 --alpha 0.5 ;;
        tinybert) run "$name" "$RUNS/$name" slimbert compress tinybert "${common[@]}" \
              --intermediate-epochs 1 --epochs "$epochs" --temperature 1 ;;
        *) echo "[mrpc-transfer] unknown method $method"; exit 1 ;;
      esac
    done
  done
done
