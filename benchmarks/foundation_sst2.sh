#!/usr/bin/env bash
# Foundation figures on SST-2 (benchmarks/results/foundation-sst2/):
#   the MiniLM teacher fine-tuned on a seeded 10,000-row subset of SST-2 train (max length 64,
#   early stopping on the whole dev set), its kd students with 3, 2 and 1 layers, ONNX parity on
#   the whole dev set, and one bench run (batch 1 and 8, CPU provider) over all of them.
# Usage, from the repository root with the venv active:
#   bash benchmarks/foundation_sst2.sh [RUNS_DIR]          # training: ~1 h on 2 quiet cores
#   STAGE=students bash benchmarks/foundation_sst2.sh      # students and bench, teacher already trained
#   STAGE=bench bash benchmarks/foundation_sst2.sh         # re-run only the timing on a quiet machine
set -euo pipefail
GLUE=${GLUE:-../shared/data/glue}
RUNS=${1:-runs/sst2}
OUT=benchmarks/results/foundation-sst2
STAGE=${STAGE:-all}
DATA=(--train "$GLUE/SST-2/train.tsv" --eval "$GLUE/SST-2/dev.tsv" --limit 10000 --sample-seed 0 --max-length 64 --batch-size 32 --seed 42)

if [ "$STAGE" = all ]; then
  slimbert train-teacher --base minilm-l6 "${DATA[@]}" --out "$RUNS/teacher" \
    --epochs 3 --lr 1e-4 --eval-every 100 --patience 4 2>&1 | tr '\r' '\n' | grep --line-buffered -v '|' | tee "$RUNS.teacher.log"
fi
if [ "$STAGE" = all ] || [ "$STAGE" = students ]; then
  for layers in 3 2 1; do
    slimbert compress kd --teacher "$RUNS/teacher" "${DATA[@]}" --layers "$layers" --out "$RUNS/kd-${layers}L" \
      --epochs 3 --lr 1e-4 --temperature 2 --alpha 0.5 --eval-every 100 --patience 3 2>&1 | tr '\r' '\n' | grep --line-buffered -v '|' | tee "$RUNS.kd-${layers}L.log"
  done
fi
# The int8 artifact of the 3-layer student joins the report as its own row (export folder).
slimbert export --model "$RUNS/kd-3L" --eval "$GLUE/SST-2/dev.tsv" --out "$RUNS/kd-3L-int8" \
  --optimize --quantize dynamic --max-f1-drop 1.0
slimbert bench --model "$RUNS/teacher" --model "$RUNS/kd-3L" --model "$RUNS/kd-2L" --model "$RUNS/kd-1L" \
  --model "$RUNS/kd-3L-int8" --eval "$GLUE/SST-2/dev.tsv" --out "$RUNS/bench" --batch-sizes 1,8 \
  --slo "p99<=10ms" --max-f1-drop 1.0
mkdir -p "$OUT"
cp "$RUNS"/bench/report.* "$RUNS"/bench/*.png "$OUT/"
for model in teacher kd-3L kd-2L kd-1L; do
  cp "$RUNS/bench/exports/$model/manifest.json" "$OUT/manifest-$model.json"
  cp "$RUNS/$model/slimbert.json" "$OUT/training-$model.json"
done
cp "$RUNS/kd-3L-int8/manifest.json" "$OUT/manifest-kd-3L-int8.json"
python benchmarks/summarize_foundation.py "$OUT"
