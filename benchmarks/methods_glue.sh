#!/usr/bin/env bash
# Distillation methods side by side (benchmarks/results/methods-glue/): kd, tinybert, theseus and
# minilm students at 3 and 2 layers (tinybert also 3 layers × hidden 192), kd with and without
# the teacher's route, TextCNN / BiLSTM / soft-tree students on hard labels and distilled.
#
#   MRPC: the full train set (3,668 pairs), 128 tokens, seeds 1 2 3; the teacher is the TS
#         teacher of benchmarks/recipes/professor-mrpc-cpu.yaml (run that experiment first:
#         its kd students are this table's kd rows, trained at the same budget).
#   SST-2: a seeded 10,000-row subset (sample seed 0), 64 tokens, seed 1, the 3-layer and
#         attention-free rows (no BiLSTM); its teacher is trained here with the MRPC one's settings.
#
# Every transformer student gets the same step budget: 2 passes over the training set, split
# 1 + 1 between a method's two stages (tinybert: intermediate + prediction layer; theseus:
# replacing + successor fine-tuning; minilm: relations + prediction), lr 1e-4, batch 32, bf16
# autocast, length-grouped batches, early stopping (patience 2) on dev. The students without
# attention train from their example recipes (recipes/*.yaml) with the teacher and data swapped.
# A finished model (its slimbert.json exists) is skipped, so the script resumes.
#
# Usage, from the repository root with the venv active (one intra-op thread per job lets two
# jobs share a 2-core machine):
#   bash benchmarks/methods_glue.sh                      # or STAGES="mrpc:2 sst2" ... for a part
#   STAGES=bench bash benchmarks/methods_glue.sh   # latency, on a quiet machine
#   python benchmarks/summarize_methods.py        # the table
set -euo pipefail
GLUE=${GLUE:-../shared/data/glue}
RUNS=${RUNS:-runs/methods}
MRPC_TEACHER=${MRPC_TEACHER:-runs/professor-mrpc/models/teacher}
SST2_TEACHER=${SST2_TEACHER:-$RUNS/sst2/teacher}
STAGES=${STAGES:-sst2-teacher mrpc:1 mrpc:2 mrpc:3 sst2}
KINDS=${KINDS:-textcnn tree bilstm}  # students without attention, in order
ONLY=${ONLY:-.*}                     # train only the models whose name matches (e.g. "textcnn-.*|tree-.*")
FAST=(--batch-size 32 --lr 1e-4 --patience 2 --mixed-precision auto --group-by-length --no-progress)
MRPC=(--train "$GLUE/MRPC/train.tsv" --eval "$GLUE/MRPC/dev.tsv" --max-length 128)
SST2=(--train "$GLUE/SST-2/train.tsv" --eval "$GLUE/SST-2/dev.tsv" --limit 10000 --sample-seed 0 --max-length 64)

run() {  # run OUT LOGNAME command...
  local out=$1 name=$2
  shift 2
  if [ -f "$out/slimbert.json" ]; then echo "[methods] $out: done, skipped"; return; fi
  if [[ ! $name =~ ^($ONLY)$ ]]; then return; fi
  mkdir -p "$(dirname "$out")"
  echo "[methods] $out: $(date -u +%H:%M:%S) start"
  "$@" --out "$out" > "$(dirname "$out")/$name.log" 2>&1 || { echo "[methods] $out: FAILED, see $(dirname "$out")/$name.log"; return 1; }
  echo "[methods] $out: $(date -u +%H:%M:%S) done"
}

students() {  # students TASK TEACHER SEED data-flags...
  local task=$1 teacher=$2 seed=$3
  shift 3
  local dir=$RUNS/$task/seed$seed common=("$@" --teacher "$teacher" --seed "$seed")
  local depths=(3 2)
  [ "$task" = sst2 ] && depths=(3)  # SST-2 (one seed) gets the 3-layer rows only: the CPU budget
  if [ "$task" = sst2 ]; then  # MRPC's kd rows are the professor experiment's TS students
    run "$dir/kd-3L" kd-3L slimbert compress kd "${common[@]}" "${FAST[@]}" --layers 3 --epochs 2 --temperature 2 --alpha 0.5
  fi
  run "$dir/kd-route-3L" kd-route-3L slimbert compress kd "${common[@]}" "${FAST[@]}" --layers 3 --epochs 2 --temperature 2 --alpha 0.5 --teacher-route "$teacher/route"
  for layers in "${depths[@]}"; do
    run "$dir/tinybert-${layers}L" "tinybert-${layers}L" slimbert compress tinybert "${common[@]}" "${FAST[@]}" --layers "$layers" --intermediate-epochs 1 --epochs 1 --intermediate-lr 1e-4 --temperature 1
    run "$dir/theseus-${layers}L" "theseus-${layers}L" slimbert compress theseus "${common[@]}" "${FAST[@]}" --layers "$layers" --epochs 1 --finetune-epochs 1 --schedule linear --replace-rate 0.3
    run "$dir/minilm-${layers}L" "minilm-${layers}L" slimbert compress minilm "${common[@]}" "${FAST[@]}" --layers "$layers" --relation-epochs 1 --epochs 1 --relation-heads 12
  done
  [ "$task" = mrpc ] && run "$dir/tinybert-3L-h192" tinybert-3L-h192 slimbert compress tinybert "${common[@]}" "${FAST[@]}" --layers 3 --hidden-size 192 --heads 4 --ffn-size 768 --intermediate-epochs 1 --epochs 1 --intermediate-lr 1e-4 --temperature 1
  local kinds=($KINDS)
  [ "$task" = sst2 ] && kinds=(textcnn tree)  # BiLSTM: 20 epochs of 10k rows is past the budget
  for kind in "${kinds[@]}"; do
    run "$dir/$kind-hard" "$kind-hard" slimbert compress "$kind" --recipe "recipes/$kind.yaml" "${common[@]}" --alpha 0 --no-progress
    run "$dir/$kind-kd" "$kind-kd" slimbert compress "$kind" --recipe "recipes/$kind.yaml" "${common[@]}" --no-progress
  done
}

for stage in $STAGES; do
  case $stage in
    sst2-teacher)
      run "$SST2_TEACHER" teacher slimbert train-teacher --base minilm-l6 "${SST2[@]}" "${FAST[@]}" --seed 42 --epochs 3 --save-route 2 ;;
    sst2)
      students sst2 "$SST2_TEACHER" 1 "${SST2[@]}" ;;
    mrpc:*)
      [ -f "$MRPC_TEACHER/slimbert.json" ] || { echo "[methods] $MRPC_TEACHER: no teacher yet; run slimbert experiment benchmarks/recipes/professor-mrpc-cpu.yaml first"; exit 1; }
      students mrpc "$MRPC_TEACHER" "${stage#mrpc:}" "${MRPC[@]}" ;;
    textcnn-mse:*)  # Tang et al.'s variant: MSE between logits, no label term (alpha 1)
      seed=${stage#textcnn-mse:}
      run "$RUNS/mrpc/seed$seed/textcnn-mse" textcnn-mse slimbert compress textcnn --recipe recipes/textcnn.yaml "${MRPC[@]}" \
        --teacher "$MRPC_TEACHER" --seed "$seed" --soft-loss mse --alpha 1 --no-progress ;;
    bench)  # one model per architecture; the summary maps every student onto its architecture's row
      S=$RUNS/mrpc/seed1 E=${MRPC_TEACHER%/teacher}/students
      slimbert bench --model "$MRPC_TEACHER" --model "$E/student-ts-3L-seed1" --model "$E/student-ts-2L-seed1" \
        --model "$S/tinybert-3L-h192" --model "$S/textcnn-kd" --model "$S/bilstm-kd" --model "$S/tree-kd" \
        --eval "$GLUE/MRPC/dev.tsv" --runtime onnx --batch-sizes 1 --out "$RUNS/bench" ;;
    *) echo "[methods] unknown stage $stage"; exit 1 ;;
  esac
done
