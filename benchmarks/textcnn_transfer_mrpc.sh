#!/usr/bin/env bash
# A distilled TextCNN on MRPC with and without a teacher-labelled transfer set
# (benchmarks/results/textcnn-transfer-mrpc/).
#
#   teacher    the bundled MiniLM fine-tuned on MRPC's 3,668 training pairs (up to 5 epochs,
#              patience 2, checkpoints chosen on dev accuracy)
#   transfer   `slimbert augment`, one set per entry of TRANSFERS: "cN-pP" is N word-replaced
#              copies of every training pair (the teacher's embedding neighbours, whole words,
#              each word replaced with probability P) plus the pairs symmetry and transitivity
#              imply; "c0" is those implied pairs alone. Every row is labelled by the teacher;
#              no dev sentence enters a set
#   students   TextCNN (recipes/textcnn.yaml: E=300, widths 3,4,5 × 100, 10 epochs, patience 3),
#              reading each pair siamese (ENCODING=siamese, rows named siamese-*: each sentence
#              through the convolutions apart) or packed (ENCODING=packed: one sequence)
#              for each seed: hard labels only (--alpha 0), distilled (the teacher's logits on the
#              training rows), and distilled with each transfer set; chosen on dev accuracy
#
# Each finished model's slimbert.json and wall-clock go to $RESULTS/cells/ at once, and a rerun
# skips every finished one; `python benchmarks/summarize_textcnn_transfer.py` writes the table.
# Models live outside the checkout ($RUNS, default ~/slimbert-runs/textcnn-transfer-mrpc).
#
# Usage, from the repository root with the venv active:
#   bash benchmarks/textcnn_transfer_mrpc.sh
#   SEEDS="1" TRANSFERS="c0 c2-p0.1" bash benchmarks/textcnn_transfer_mrpc.sh
#   ENCODING=packed bash benchmarks/textcnn_transfer_mrpc.sh
set -euo pipefail
GLUE=${GLUE:-../shared/data/glue}
RUNS=${RUNS:-$HOME/slimbert-runs/textcnn-transfer-mrpc}
RESULTS=${RESULTS:-benchmarks/results/textcnn-transfer-mrpc}
SEEDS=${SEEDS:-1 2 3}
TRANSFERS=${TRANSFERS:-c0 c2-p0.1}
ENCODING=${ENCODING:-siamese}
RECIPE=${RECIPE:-recipes/textcnn.yaml}
TEACHER=$RUNS/teacher
DATA=(--train "$GLUE/MRPC/train.tsv" --eval "$GLUE/MRPC/dev.tsv" --max-length 128)
mkdir -p "$RUNS" "$RESULTS/cells"

record() {  # record NAME OUT SECONDS command...
  local name=$1 out=$2 seconds=$3
  shift 3
  cp "$out/slimbert.json" "$RESULTS/cells/$name.json"
  printf '{"name": "%s", "wall_seconds": %d, "command": "%s", "machine": "%s", "cores": %d}\n' \
    "$name" "$seconds" "$*" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
    "$(nproc)" > "$RESULTS/cells/$name.budget.json"
}

run() {  # run NAME OUT command...   (skips a finished model)
  local name=$1 out=$2
  shift 2
  if [ -f "$out/slimbert.json" ]; then echo "[textcnn] $name: done, skipped"; return; fi
  echo "[textcnn] $name: $(date -u +%H:%M:%S) start"
  local start
  start=$(date +%s)
  "$@" --out "$out" > "$RUNS/$name.log" 2>&1 || { echo "[textcnn] $name: FAILED, see $RUNS/$name.log"; return 1; }
  record "$name" "$out" $(( $(date +%s) - start )) "$@"
  echo "[textcnn] $name: $(date -u +%H:%M:%S) done"
}

run teacher "$TEACHER" slimbert train-teacher --base minilm-l6 "${DATA[@]}" --metric accuracy \
  --epochs 5 --patience 2 --batch-size 32 --lr 1e-4 --seed 42 --no-progress

for variant in $TRANSFERS; do
  transfer=$RUNS/transfer-$variant.jsonl
  [ -f "$transfer" ] && continue
  copies=${variant%%-*}
  copies=${copies#c}
  words=(--copies "$copies")
  [[ $variant == *-p* ]] && words+=(--prob "${variant##*-p}")
  echo "[textcnn] transfer-$variant: $(date -u +%H:%M:%S) start"
  slimbert augment --teacher "$TEACHER" --train "$GLUE/MRPC/train.tsv" --eval "$GLUE/MRPC/dev.tsv" \
    --max-length 128 "${words[@]}" --pair-rules --out "$transfer" > "$RUNS/transfer-$variant.log" 2>&1
  cp "${transfer%.jsonl}.manifest.json" "$RESULTS/cells/transfer-$variant.manifest.json"
  echo "[textcnn] transfer-$variant: $(date -u +%H:%M:%S) done"
done

# packed rows keep their first names (they ran before siamese pairs existed); siamese rows say so
prefix=""
[ "$ENCODING" = siamese ] && prefix="siamese-"
for seed in $SEEDS; do
  common=(--recipe "$RECIPE" --teacher "$TEACHER" "${DATA[@]}" --metric accuracy --seed "$seed"
          --pair-encoding "$ENCODING" --no-progress)
  run "${prefix}hard-seed$seed" "$RUNS/${prefix}hard-seed$seed" \
    slimbert compress textcnn "${common[@]}" --alpha 0
  run "${prefix}kd-seed$seed" "$RUNS/${prefix}kd-seed$seed" slimbert compress textcnn "${common[@]}"
  for variant in $TRANSFERS; do
    run "${prefix}kd-transfer-$variant-seed$seed" "$RUNS/${prefix}kd-transfer-$variant-seed$seed" \
      slimbert compress textcnn "${common[@]}" --transfer "$RUNS/transfer-$variant.jsonl"
  done
done
