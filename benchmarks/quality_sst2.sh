#!/usr/bin/env bash
# Students that keep the teacher's quality: SST-2 at full budget (benchmarks/results/quality-sst2/).
#
#   teacher   the bundled MiniLM on all 67,349 training rows, 64 tokens, early stopping on dev
#             (evaluated every 500 steps, patience 4), at most 3 epochs
#   students  kd, tinybert (intermediate + prediction) and minilm at 3 and 2 layers, each on the
#             cached teacher logits, early stopping on dev; seed 1 (the 3-layer winner gets a
#             second seed by SEEDS="1 2 ..." with ONLY=<its name>)
#   transfer  (not in the default stages) the same students, each also with a transfer set: one
#             word-replaced copy of every training row (embedding neighbours, p 0.3; COPIES=n
#             for more), labelled by the teacher, no dev sentence in it
#   export    every seed of the best 3-layer method (by seed 1's dev accuracy, with or without
#             the transfer set) as fused int8 (dynamic), each validated on the whole dev file
#   bench     the teacher in PyTorch eager and ONNX beside the best student and every 3-layer
#             int8 artifact, batch 1, every dev sentence, on a quiet machine (report under
#             $RESULTS/bench)
#   static    (not in the default stages) seed 1 of the best 3-layer method as static int8 too,
#             calibrated on 256 training rows by minmax and by percentile, each validated on the
#             whole dev file, then benched beside its dynamic int8 export and the teacher on a
#             quiet machine (report under $RESULTS/static-int8)
#
# Every trained row uses --mixed-precision auto (bf16 autocast where the CPU computes bf16:
# every committed row; fp32 on AVX2, where bf16 is emulated) and length-grouped batches, lr
# 1e-4, batch 32. Models live outside the checkout ($RUNS, default ~/slimbert-runs/quality-sst2);
# each finished cell's slimbert.json and its wall-clock go to $RESULTS/cells/ at once, so the
# figures can be committed as they come and a rerun skips every finished cell (copying the
# figures of one that finished after the last commit; its wall-clock is kept beside the model).
#
# Usage, from the repository root with the venv active:
#   bash benchmarks/quality_sst2.sh                         # every cell not yet done
#   STAGES="teacher kd" bash benchmarks/quality_sst2.sh     # a part
#   ONLY="kd-3L" SEEDS="2" STAGES=students bash benchmarks/quality_sst2.sh
#   STAGES=transfer ONLY="kd-3L-transfer-seed1" bash benchmarks/quality_sst2.sh
#   STAGES=static bash benchmarks/quality_sst2.sh             # after export, on a quiet machine
#   STAGES=transfer ONLY="kd-2L-transfer-steps6315-seed1" TRANSFER_TAG=-steps6315 \
#     TRANSFER_FLAGS="--max-steps 6315" bash benchmarks/quality_sst2.sh
#   STAGES=transfer ONLY="minilm-3L-transfer-epochs1-seed1" TRANSFER_TAG=-epochs1 \
#     TRANSFER_FLAGS="--epochs 1 --patience 8" bash benchmarks/quality_sst2.sh
set -euo pipefail
GLUE=${GLUE:-../shared/data/glue}
RUNS=${RUNS:-$HOME/slimbert-runs/quality-sst2}
RESULTS=${RESULTS:-benchmarks/results/quality-sst2}
STAGES=${STAGES:-teacher students export}
SEEDS=${SEEDS:-1}
ONLY=${ONLY:-.*}
COPIES=${COPIES:-1}
TEACHER=$RUNS/teacher
DATA=(--train "$GLUE/SST-2/train.tsv" --eval "$GLUE/SST-2/dev.tsv" --max-length 64)
FAST=(--batch-size 32 --lr 1e-4 --mixed-precision auto --group-by-length --no-progress
      --eval-every 500 --patience 4)

run() {  # run NAME OUT command...   (skips a finished cell; records its wall-clock)
  local name=$1 out=$2
  shift 2
  if [ -f "$out/slimbert.json" ]; then
    # a cell that finished after the last commit: its figures reach $RESULTS now
    if [ ! -f "$RESULTS/cells/$name.json" ]; then
      mkdir -p "$RESULTS/cells"
      cp "$out/slimbert.json" "$RESULTS/cells/$name.json"
      if [ -f "$RUNS/$name.budget.json" ]; then cp "$RUNS/$name.budget.json" "$RESULTS/cells/"; fi
      echo "[quality] $name: done earlier, its cell copied to $RESULTS/cells"
    else
      echo "[quality] $name: done, skipped"
    fi
    return
  fi
  if [[ ! $name =~ ^($ONLY)$ ]]; then return; fi
  mkdir -p "$(dirname "$out")" "$RESULTS/cells"
  # A cell stopped part-way left its training state in $out: continue from it (the wall-clock
  # then counts this run alone, and the budget file says it resumed).
  local resume=() resumed=false
  if [ -d "$out/training-state" ]; then resume=(--resume); resumed=true; fi
  echo "[quality] $name: $(date -u +%H:%M:%S) start${resume:+ (resuming)}"
  local start
  start=$(date +%s)
  "$@" "${resume[@]}" --out "$out" >> "$RUNS/$name.log" 2>&1 || { echo "[quality] $name: FAILED, see $RUNS/$name.log"; return 1; }
  local seconds=$(( $(date +%s) - start ))
  cp "$out/slimbert.json" "$RESULTS/cells/$name.json"
  printf '{"name": "%s", "wall_seconds": %d, "resumed": %s, "command": "%s", "machine": "%s", "cores": %d}\n' \
    "$name" "$seconds" "$resumed" "$*" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(nproc)" \
    > "$RUNS/$name.budget.json"
  cp "$RUNS/$name.budget.json" "$RESULTS/cells/$name.budget.json"
  echo "[quality] $name: $(date -u +%H:%M:%S) done in ${seconds}s"
}

students() {  # students NAME-SUFFIX [extra flags...]: kd, tinybert, minilm at 3 and 2 layers, every seed
  local suffix=$1 seed layers
  shift
  for seed in $SEEDS; do
    for layers in 3 2; do
      # the extra flags come last: a flag given twice takes its last value, so they override
      local common=(--teacher "$TEACHER" "${DATA[@]}" "${FAST[@]}" --seed "$seed" --layers "$layers")
      local name="L$suffix-seed$seed"
      run "kd-$layers$name" "$RUNS/kd-$layers$name" \
        slimbert compress kd "${common[@]}" --epochs 3 --temperature 2 --alpha 0.5 "$@"
      run "tinybert-$layers$name" "$RUNS/tinybert-$layers$name" \
        slimbert compress tinybert "${common[@]}" --intermediate-epochs 1 --epochs 2 --temperature 1 "$@"
      run "minilm-$layers$name" "$RUNS/minilm-$layers$name" \
        slimbert compress minilm "${common[@]}" --relation-epochs 1 --epochs 2 --relation-heads 12 "$@"
    done
  done
}

best_3l() {  # the 3-layer method (e.g. kd-3L or kd-3L-transfer) with the best seed-1 dev accuracy
  python - "$RUNS" <<'PY'
import json, sys
from pathlib import Path
runs = Path(sys.argv[1])
scored = [(json.loads((d / "slimbert.json").read_text())["metric"]["accuracy"], d.name)
          for d in runs.glob("*-3L*-seed1") if (d / "slimbert.json").is_file()]
print(max(scored)[1].removesuffix("-seed1") if scored else "")
PY
}

for stage in $STAGES; do
  case $stage in
    teacher)
      run teacher "$TEACHER" slimbert train-teacher --base minilm-l6 "${DATA[@]}" "${FAST[@]}" \
        --seed 42 --epochs 3 ;;
    students)
      students "" ;;
    transfer)  # the same students, each also with a teacher-labelled transfer set
      transfer=$RUNS/transfer.jsonl
      if [ ! -f "$transfer" ]; then
        echo "[quality] transfer set: $(date -u +%H:%M:%S) start"
        slimbert augment --teacher "$TEACHER" --train "$GLUE/SST-2/train.tsv" \
          --eval "$GLUE/SST-2/dev.tsv" --max-length 64 --copies "$COPIES" --prob 0.3 \
          --out "$transfer" > "$RUNS/transfer.log" 2>&1
        mkdir -p "$RESULTS/cells" && cp "${transfer%.jsonl}.manifest.json" "$RESULTS/cells/transfer.manifest.json"
      fi
      # TRANSFER_TAG names a variant of these rows and TRANSFER_FLAGS gives its flags, e.g.
      # TRANSFER_TAG=-steps6315 TRANSFER_FLAGS="--max-steps 6315": kd-2L-transfer-steps6315-seed1
      # (as many steps as the plain kd row, so the learning rate decays over the same steps)
      read -r -a variant <<< "${TRANSFER_FLAGS:-}"
      students "-transfer${TRANSFER_TAG:-}" --transfer "$transfer" "${variant[@]}" ;;
    export)  # the best 3-layer method on dev accuracy (with or without the transfer set), every
             # seed of it, fused and int8
      best=$(best_3l)
      [ -n "$best" ] || { echo "[quality] export: no 3-layer student yet"; exit 1; }
      for model in "$RUNS/$best"-seed*; do
        # model folders only: not the runs' logs beside them, nor the exports
        [ -f "$model/slimbert.json" ] || continue
        case $model in *-int8) continue ;; esac
        out=$model-int8
        if [ -f "$out/manifest.json" ]; then echo "[quality] export: $out done, skipped"; continue; fi
        slimbert export --model "$model" --eval "$GLUE/SST-2/dev.tsv" --max-length 64 \
          --optimize --quantize dynamic --out "$out"
        mkdir -p "$RESULTS/cells" && cp "$out/manifest.json" "$RESULTS/cells/$(basename "$out").manifest.json"
      done ;;
    bench)  # teacher (eager and ONNX), the best 3-layer student and every 3-layer int8 export
      int8=("$RUNS"/*-3L*-seed*-int8)
      [ -d "${int8[0]}" ] || { echo "[quality] bench: run the export stage first"; exit 1; }
      models=()
      for export in "${int8[@]}"; do models+=(--model "$export"); done
      slimbert bench --model "$TEACHER" --model "$RUNS/$(best_3l)-seed1" "${models[@]}" \
        --eval "$GLUE/SST-2/dev.tsv" --batch-sizes 1 --out "$RESULTS/bench" ;;
    static)  # QDQ int8 with calibrated activation ranges against the dynamic int8 export
      model=$RUNS/$(best_3l)-seed1
      [ -d "$model-int8" ] || { echo "[quality] static: run the export stage first"; exit 1; }
      for method in minmax percentile; do
        out=$model-int8-static-$method
        if [ -f "$out/manifest.json" ]; then
          echo "[quality] static: $out done, skipped"
        else
          slimbert export --model "$model" --eval "$GLUE/SST-2/dev.tsv" --max-length 64 \
            --optimize --quantize static --calibration-data "$GLUE/SST-2/train.tsv" \
            --calibration-method "$method" --out "$out"
        fi
        mkdir -p "$RESULTS/cells" && cp "$out/manifest.json" "$RESULTS/cells/$(basename "$out").manifest.json"
      done
      slimbert bench --model "$TEACHER" --model "$model-int8" --model "$model-int8-static-minmax" \
        --model "$model-int8-static-percentile" --eval "$GLUE/SST-2/dev.tsv" --batch-sizes 1 \
        --out "$RESULTS/static-int8" ;;
    *) echo "[quality] unknown stage $stage"; exit 1 ;;
  esac
done
