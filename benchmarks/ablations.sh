#!/usr/bin/env bash
# The papers' own ablations, each on slimbert's implementation (issue 28, item 2; tables in
# benchmarks/results/ablations/, written by benchmarks/summarize_ablations.py from cells/).
#
# Data: MRPC (all 3,668 training pairs, 128 tokens) and SST-2 10k (the first 10,000 rows of the
# training file shuffled with sample seed 0, 64 tokens), read by path from ../shared/data/glue;
# every figure on the whole dev file. Seeds: SEEDS (default "1 2 3"), the student's seed.
#
#   teachers    the bundled MiniLM (minilm-l6, 6 × 384) fine-tuned on each task: lr 1e-4, batch
#               32, at most 5 epochs (MRPC) / 3 epochs (SST-2 10k), evaluated every epoch,
#               patience 2, picked on dev accuracy (F1 rewards MRPC's all-"paraphrase" answer)
#   general     TinyBERT's general step, once: `distill-general --objective tinybert` from the
#               pre-trained minilm-l6 (not a fine-tuned teacher, as the paper's general step
#               uses the pre-trained BERT) into the 3-layer cut (uniform map), on the SST-2 and
#               MRPC training texts (labels unused), 128 tokens, 1,500 steps of 32
#   transfer    each task's teacher-labelled transfer set for TinyBERT's augmentation
#               (`slimbert augment`, the teacher's embedding neighbours: no MLM head is offline):
#               MRPC 8 word-replaced copies per pair at p 0.4 plus the pairs symmetry and
#               transitivity imply; SST-2 10k one copy per row at p 0.3 (the settings the MiniLM
#               transfer studies found best)
#   tinybert    3-layer students (TinyBERT's Tables 5–7): all four losses with the uniform map
#               (the reference row); without the embedding / attention / hidden-state loss and
#               without both Transformer-layer losses (weight 0); top and bottom maps; from the
#               general step (--student-init); with the transfer set (--transfer); without the
#               prediction-layer loss (--prediction-loss labels: the last stage on the labels)
#   theseus     3-layer students (Xu et al.'s comparison): theseus with constant p = 0.5 and
#               with the curriculum p(t) from b = 0.3 (both --init first, the paper's code), the
#               teacher's first 3 layers fine-tuned on the labels (kd --layer-map bottom
#               --alpha 0), and kd (uniform map, T 2, alpha 0.5)
#   minilm      3-layer students (MiniLMv2's comparisons): the Q-Q, K-K, V-V relations of the
#               teacher's last layer (the reference); MiniLM's attention distributions and V-V
#               relation (--relations v1); the relations of the teacher's second-to-last layer
#               (--teacher-layer -2, v2's "upper-middle layer"); 24 relation heads instead of the
#               teacher's 12 (--relation-heads 24); each relation stage then kd, T 2, alpha 0.5
#   textcnn     TextCNN students (E 300, widths 3,4,5 × 100), every one compared after training
#               with a previous production model (--previous-model: agreement, recall of its
#               positives, kept correct): the labels alone (alpha 0); scheme 1 the teacher's
#               cached logits; 2 joint, alternating, isolated (the teacher steps on its labels,
#               then the student on its fresh logits, detached); 3 joint, alternating, not
#               isolated (the student's loss moves the teacher too); 4 joint, one summed step
#               (isolated); 5 two teachers, the teacher and the previous model (the plain mean
#               of their logits). The previous model is a TextCNN on the labels alone, trained
#               once per task with seed 100 (cell TASK-textcnn-previous). The joint teachers
#               start from the fine-tuned teacher, teacher lr 2e-5
#   distilbert  DistilBERT's triple loss against each term left out and each term alone, in
#               the general step on the SST-2 and MRPC texts (DISTILBERT_LAYERS, default 3:
#               half the teacher's depth, as DistilBERT halves BERT; 1,500 steps of 32), then
#               kd on each task from it. It needs a teacher saved with its masked-LM head: each
#               of MLM_TEACHERS (default minilm-l6, and the assembled MPNet-base when present)
#               is asked first and its answer goes to cells/distilbert-teachers.txt. Neither
#               bundled checkpoint has the head (both are sentence-transformers exports), so
#               when none answers the stage makes one (cell mlm-teacher): the bundled MiniLM,
#               all 6 layers, given a masked-LM head by continued masked-LM pre-training
#               (pretrain-student, the head learned from scratch) on the same texts, 3,000
#               steps of 32, lr 1e-4
#
# Budget per cell (the same for every row of a table; patience 3 on dev, so a cell is cut by
# its steps unless early stopping fires first), batch 32, lr 1e-4, --mixed-precision auto
# (bf16 autocast on the AMX machine of every committed cell),
# length-grouped batches:
#   MRPC     two-stage methods (tinybert: intermediate + prediction; theseus: replacing +
#            successor fine-tuning; minilm: relations + prediction) 230 + 230 steps (2 + 2 epochs), kd and first-3 460 steps;
#            evaluated every 115 steps (one epoch)
#   SST-2    313 + 313 steps (1 + 1 epochs of 10k), kd and first-3 626; evaluated every 157
#   TextCNN  batch 64, lr 1e-3: MRPC 290 steps (5 epochs), SST-2 470 steps (3 epochs),
#            evaluated every epoch
# With the transfer set the same steps draw from the larger set (the same cost, other rows).
# Wall-clock per cell, from 20–40-step probes on the real data scaled to these budgets (2
# cores, one intra-op thread, other jobs running; estimates, not measurements): MRPC tinybert
# 5–10 min, theseus ~5, kd and first-3 3–4, TextCNN offline ~2, joint 9–10; SST-2 10k
# tinybert, theseus and kd 3–4, TextCNN offline ~2, joint ~7; each teacher 10–20, the general
# step ~8, each transfer set 2–5; minilm as tinybert. At SEEDS="1 2 3": 60 tinybert, 24
# theseus/kd, 24 minilm and 38 TextCNN cells, about 13–15 hours in all. Two cells at a time,
# one thread each, make more of two cores than one cell on both (train-speed: 122 examples/s
# on one thread, 154 on two).
#
# Models live outside the checkout ($RUNS, default ~/slimbert-runs/ablations); each finished
# cell's slimbert.json, config.json and budget (wall-clock, peak memory, command, machine) go
# to $RESULTS/cells/ at once (benchmarks/cells.sh), so a rerun skips every finished cell and
# resumes a stopped one from its training state (the alternating joint cells save none and
# start over: that update refuses --resume).
#
# SMOKE=1 runs every cell of every stage on 64 training rows, 2 steps per stage and the first
# 32 dev rows (copied into $RUNS/data: the only data this script copies), one seed, 32 tokens,
# into /tmp/ablations-smoke; it checks the commands, not the figures. Smoke mode also gives the
# distilbert stage two of its rows, DISTILBERT_ROWS="triple soft": the full triple loss and
# one with two weights at 0 (its masked-LM teacher made in 2 steps).
#
# Usage, from the repository root with the venv active:
#   bash benchmarks/ablations.sh                                  # every stage not yet done
#   STAGES="teachers tinybert" TASKS=mrpc bash benchmarks/ablations.sh
#   STAGES=theseus ONLY="mrpc-theseus-.*-seed1" bash benchmarks/ablations.sh
#   SMOKE=1 bash benchmarks/ablations.sh && python benchmarks/summarize_ablations.py \
#     --results /tmp/ablations-smoke/results
#   python benchmarks/summarize_ablations.py                      # the tables
set -euo pipefail
SMOKE=${SMOKE:-0}
GLUE=${GLUE:-../shared/data/glue}
if [ "$SMOKE" = 1 ]; then
  RUNS=${RUNS:-/tmp/ablations-smoke/runs}
  RESULTS=${RESULTS:-/tmp/ablations-smoke/results}
  SEEDS=${SEEDS:-1}
  DISTILBERT_ROWS=${DISTILBERT_ROWS:-triple soft}  # its head is random here: the path, not a row
else
  RUNS=${RUNS:-$HOME/slimbert-runs/ablations}
  RESULTS=${RESULTS:-benchmarks/results/ablations}
  SEEDS=${SEEDS:-1 2 3}
fi
STAGES=${STAGES:-teachers general transfer tinybert theseus minilm textcnn distilbert}
TASKS=${TASKS:-mrpc sst2}
ONLY=${ONLY:-.*}
DISTILBERT_LAYERS=${DISTILBERT_LAYERS:-3}
MPNET=${MPNET:-$HOME/slimbert-runs/base-teacher/all-mpnet-base-v2}
MLM_TEACHERS=${MLM_TEACHERS:-minilm-l6${MPNET:+ $MPNET}}
TAG=ablations
mkdir -p "$RUNS" "$RESULTS/cells"
RESULTS=$(cd "$RESULTS" && pwd)
# shellcheck source=benchmarks/cells.sh
source "$(dirname "$0")/cells.sh"

FAST=(--mixed-precision auto --group-by-length --no-progress)
SMOKE_FLAGS=()
dev() { echo "$GLUE/$1/dev.tsv"; }
if [ "$SMOKE" = 1 ]; then
  # the last occurrence of a flag wins, so these cut every command below
  SMOKE_FLAGS=(--limit 64 --max-steps 2 --eval-every 2 --batch-size 16 --max-length 32)
  mkdir -p "$RUNS/data"
  for upper in MRPC SST-2; do
    head -n 33 "$GLUE/$upper/dev.tsv" > "$RUNS/data/$upper-dev.tsv"
  done
  dev() { echo "$RUNS/data/$1-dev.tsv"; }
fi

task_flags() {  # task_flags TASK: DATA (files, length, metric), the step budget, the transfer set
  case $1 in
    mrpc)
      DATA=(--train "$GLUE/MRPC/train.tsv" --eval "$(dev MRPC)" --max-length 128 --metric accuracy)
      STAGE_STEPS=230 ONE_STAGE_STEPS=460 EVAL_EVERY=115 CNN_STEPS=290 CNN_EVAL=58 ;;
    sst2)
      DATA=(--train "$GLUE/SST-2/train.tsv" --eval "$(dev SST-2)" --limit 10000 --sample-seed 0
            --max-length 64 --metric accuracy)
      STAGE_STEPS=313 ONE_STAGE_STEPS=626 EVAL_EVERY=157 CNN_STEPS=470 CNN_EVAL=157 ;;
    *) echo "[$TAG] unknown task $1"; exit 1 ;;
  esac
  TEACHER=$RUNS/$1-teacher
  TRANSFER=$RUNS/$1-transfer.jsonl
}

need() {  # need PATH STAGE: a finished model folder or a file an earlier stage writes
  [ -f "$1/slimbert.json" ] || [ -f "$1" ] && return 0
  echo "[$TAG] $1 missing: run STAGES=$2 first"
  return 1
}

texts() {  # the general steps' unlabelled text: both tasks' training texts (pairs kept)
  echo --text "$GLUE/SST-2/train.tsv" --text "$GLUE/MRPC/train.tsv"
}

# TinyBERT's rows: name → flags beside the reference row's
declare -A TINYBERT=(
  [full]=""
  [no-emb]="--embedding-weight 0"
  [no-att]="--attention-weight 0"
  [no-hid]="--hidden-weight 0"
  [no-trm]="--attention-weight 0 --hidden-weight 0"
  [no-pred]="--prediction-loss labels"
  [top]="--layer-map top"
  [bottom]="--layer-map bottom"
  [general]="--student-init $RUNS/general-3L"
  [transfer]="--transfer TRANSFER"
)
TINYBERT_ORDER=(full no-emb no-att no-hid no-trm no-pred top bottom general transfer)
# MiniLM's rows: name → flags beside the reference row's
declare -A MINILM=(
  [v2]="" [v1]="--relations v1" [layer-2]="--teacher-layer -2" [heads24]="--relation-heads 24"
)
MINILM_ORDER=(v2 v1 layer-2 heads24)
# The TextCNN schemes: name → flags (the teacher flags are added per task)
declare -A SCHEMES=(
  [hard]="--alpha 0"
  [s1]=""
  [s2]="--joint --joint-update alternating --isolated --teacher-lr 2e-5 --no-save-state"
  [s3]="--joint --joint-update alternating --not-isolated --teacher-lr 2e-5 --no-save-state"
  [s4]="--joint --joint-update summed --isolated --teacher-lr 2e-5"
  [s5]="--teacher PREVIOUS"
)
SCHEME_ORDER=(hard s1 s2 s3 s4 s5)
# DistilBERT's rows: name → soft-target, masked-LM and cosine weights (the paper's 5, 2, 1)
declare -A TRIPLE=(
  [triple]="5 2 1" [no-soft]="0 2 1" [no-mlm]="5 0 1" [no-cos]="5 2 0"
  [soft]="5 0 0" [mlm]="0 2 0" [cos]="0 0 1"
)
read -r -a TRIPLE_ORDER <<< "${DISTILBERT_ROWS:-triple no-soft no-mlm no-cos soft mlm cos}"

mlm_probe() {  # mlm_probe TEACHER: 0 when distill-general takes it as a masked-LM teacher
  local teacher=$1 probe=$RUNS/.mlm-probe
  rm -rf "$probe"
  if slimbert distill-general --teacher "$teacher" --objective distilbert --layers 1 \
      --text "$GLUE/MRPC/train.tsv" --limit 16 --max-steps 1 --batch-size 8 --max-length 32 \
      --no-progress --no-save-state --out "$probe" > "$RUNS/mlm-probe.log" 2>&1; then
    echo "$teacher: has a masked-LM head (distill-general --objective distilbert ran)"
    rm -rf "$probe"
    return 0
  fi
  echo "$teacher: $(grep -v '^\s*$' "$RUNS/mlm-probe.log" | tail -1)"
  return 1
}

for stage in $STAGES; do
  case $stage in
    teachers)
      for task in $TASKS; do
        task_flags "$task"
        epochs=5
        [ "$task" = sst2 ] && epochs=3
        cell "$task-teacher" "$TEACHER" slimbert train-teacher --base minilm-l6 "${DATA[@]}" \
          "${FAST[@]}" --batch-size 32 --lr 1e-4 --epochs "$epochs" --eval-every 0 \
          --patience 2 --seed 42 "${SMOKE_FLAGS[@]}"
      done ;;
    general)
      read -r -a text <<< "$(texts)"
      cell general-3L "$RUNS/general-3L" slimbert distill-general --teacher minilm-l6 \
        --objective tinybert --layers 3 --layer-map uniform "${text[@]}" --max-length 128 \
        "${FAST[@]}" --batch-size 32 --lr 1e-4 --max-steps 1500 --eval-every 500 --patience 0 \
        --seed 1 "${SMOKE_FLAGS[@]}" ;;
    transfer)
      for task in $TASKS; do
        task_flags "$task"
        [ -f "$TRANSFER" ] && { echo "[$TAG] $task transfer set: done, skipped"; continue; }
        need "$TEACHER" teachers || continue
        case $task in
          mrpc) extra=(--copies 8 --prob 0.4 --pair-rules) ;;
          sst2) extra=(--copies 1 --prob 0.3) ;;
        esac
        smoke=()
        [ "$SMOKE" = 1 ] && smoke=(--limit 64 --copies 1 --max-length 32)
        echo "[$TAG] $task transfer set: $(date -u +%H:%M:%S) start"
        # every data flag but the metric (augment picks no checkpoint)
        /usr/bin/time -f "%e %M" -o "$RUNS/$task-transfer.time" slimbert augment \
          --teacher "$TEACHER" "${DATA[@]:0:${#DATA[@]}-2}" "${extra[@]}" "${smoke[@]}" \
          --out "$TRANSFER" > "$RUNS/$task-transfer.log" 2>&1 \
          || { echo "[$TAG] $task transfer set: FAILED, see $RUNS/$task-transfer.log"; exit 1; }
        cp "${TRANSFER%.jsonl}.manifest.json" "$RESULTS/cells/$task-transfer.manifest.json"
        echo "[$TAG] $task transfer set: $(date -u +%H:%M:%S) done"
      done ;;
    tinybert)
      for task in $TASKS; do
        task_flags "$task"
        need "$TEACHER" teachers || continue
        for seed in $SEEDS; do
          for row in "${TINYBERT_ORDER[@]}"; do
            read -r -a flags <<< "${TINYBERT[$row]//TRANSFER/$TRANSFER}"
            case $row in
              general) need "$RUNS/general-3L" general || continue ;;
              transfer) need "$TRANSFER" transfer || continue ;;
            esac
            cell "$task-tinybert-$row-seed$seed" "$RUNS/$task-tinybert-$row-seed$seed" \
              slimbert compress tinybert --teacher "$TEACHER" --layers 3 "${DATA[@]}" \
              "${FAST[@]}" --batch-size 32 --lr 1e-4 --intermediate-lr 1e-4 --temperature 1 \
              --max-steps "$STAGE_STEPS" --eval-every "$EVAL_EVERY" --patience 3 \
              --seed "$seed" "${flags[@]}" "${SMOKE_FLAGS[@]}"
          done
        done
      done ;;
    theseus)
      for task in $TASKS; do
        task_flags "$task"
        need "$TEACHER" teachers || continue
        for seed in $SEEDS; do
          common=(--teacher "$TEACHER" --layers 3 "${DATA[@]}" "${FAST[@]}" --batch-size 32
                  --lr 1e-4 --eval-every "$EVAL_EVERY" --patience 3 --seed "$seed")
          for schedule in constant linear; do
            rate=0.5
            [ "$schedule" = linear ] && rate=0.3
            cell "$task-theseus-$schedule-seed$seed" "$RUNS/$task-theseus-$schedule-seed$seed" \
              slimbert compress theseus "${common[@]}" --init first --schedule "$schedule" \
              --replace-rate "$rate" --max-steps "$STAGE_STEPS" "${SMOKE_FLAGS[@]}"
          done
          cell "$task-first3-seed$seed" "$RUNS/$task-first3-seed$seed" slimbert compress kd \
            "${common[@]}" --layer-map bottom --alpha 0 --max-steps "$ONE_STAGE_STEPS" \
            "${SMOKE_FLAGS[@]}"
          cell "$task-kd-seed$seed" "$RUNS/$task-kd-seed$seed" slimbert compress kd \
            "${common[@]}" --layer-map uniform --temperature 2 --alpha 0.5 \
            --max-steps "$ONE_STAGE_STEPS" "${SMOKE_FLAGS[@]}"
        done
      done ;;
    minilm)
      for task in $TASKS; do
        task_flags "$task"
        need "$TEACHER" teachers || continue
        for seed in $SEEDS; do
          for row in "${MINILM_ORDER[@]}"; do
            read -r -a flags <<< "${MINILM[$row]}"
            cell "$task-minilm-$row-seed$seed" "$RUNS/$task-minilm-$row-seed$seed" \
              slimbert compress minilm --teacher "$TEACHER" --layers 3 "${DATA[@]}" \
              "${FAST[@]}" --batch-size 32 --lr 1e-4 --relation-lr 1e-4 --temperature 2 \
              --alpha 0.5 --max-steps "$STAGE_STEPS" --eval-every "$EVAL_EVERY" --patience 3 \
              --seed "$seed" "${flags[@]}" "${SMOKE_FLAGS[@]}"
          done
        done
      done ;;
    textcnn)
      for task in $TASKS; do
        task_flags "$task"
        need "$TEACHER" teachers || continue
        cnn=(--teacher "$TEACHER" "${DATA[@]}" "${FAST[@]}" --embedding-dim 300 --projection pca
             --kernel-sizes "3,4,5" --filters 100 --dropout 0.5 --temperature 2 --batch-size 64
             --lr 1e-3 --max-steps "$CNN_STEPS" --eval-every "$CNN_EVAL" --patience 3)
        previous=$RUNS/$task-textcnn-previous
        cell "$task-textcnn-previous" "$previous" slimbert compress textcnn "${cnn[@]}" \
          --alpha 0 --seed 100 "${SMOKE_FLAGS[@]}"
        need "$previous" textcnn || continue
        for seed in $SEEDS; do
          for scheme in "${SCHEME_ORDER[@]}"; do
            read -r -a flags <<< "${SCHEMES[$scheme]//PREVIOUS/$previous}"
            cell "$task-textcnn-$scheme-seed$seed" "$RUNS/$task-textcnn-$scheme-seed$seed" \
              slimbert compress textcnn "${cnn[@]}" --previous-model "$previous" \
              --seed "$seed" "${flags[@]}" "${SMOKE_FLAGS[@]}"
          done
        done
      done ;;
    distilbert)
      read -r -a candidates <<< "$MLM_TEACHERS"
      mlm=""
      : > "$RESULTS/cells/distilbert-teachers.txt"
      for teacher in "${candidates[@]}"; do
        [ "$teacher" = minilm-l6 ] || [ -d "$teacher" ] || continue
        if answer=$(mlm_probe "$teacher"); then mlm=${mlm:-$teacher}; fi
        echo "$answer" | tee -a "$RESULTS/cells/distilbert-teachers.txt"
      done
      read -r -a text <<< "$(texts)"
      if [ -z "$mlm" ]; then
        # none has the head: the bundled MiniLM learns one (and adapts to the texts) first
        cell mlm-teacher "$RUNS/mlm-teacher" slimbert pretrain-student --teacher minilm-l6 \
          --layers 6 --train "$GLUE/SST-2/train.tsv" --text "$GLUE/MRPC/train.tsv" \
          --max-length 128 "${FAST[@]}" --batch-size 32 --lr 1e-4 --max-steps 3000 \
          --eval-every 500 --patience 0 --seed 1 "${SMOKE_FLAGS[@]}" || continue
        mlm=$RUNS/mlm-teacher
        need "$mlm" distilbert || continue
        echo "[$TAG] distilbert: minilm-l6 given its masked-LM head by pretrain-student" \
          "(cell mlm-teacher)" | tee -a "$RESULTS/cells/distilbert-teachers.txt"
      fi
      echo "[$TAG] distilbert: masked-LM teacher $mlm" \
        | tee -a "$RESULTS/cells/distilbert-teachers.txt"
      for row in "${TRIPLE_ORDER[@]}"; do
        read -r soft mlm_weight cosine <<< "${TRIPLE[$row]}"
        cell "distilbert-$row" "$RUNS/distilbert-$row" slimbert distill-general \
          --teacher "$mlm" --objective distilbert --layers "$DISTILBERT_LAYERS" \
          --soft-weight "$soft" --mlm-weight "$mlm_weight" --cosine-weight "$cosine" \
          --temperature 2 "${text[@]}" --max-length 128 "${FAST[@]}" --batch-size 32 \
          --lr 1e-4 --max-steps 1500 --eval-every 500 --patience 0 --seed 1 "${SMOKE_FLAGS[@]}"
      done
      for task in $TASKS; do
        task_flags "$task"
        # the students read the masked-LM teacher's tokens, so their task teacher is it, tuned
        epochs=5
        [ "$task" = sst2 ] && epochs=3
        cell "$task-mlm-teacher" "$RUNS/$task-mlm-teacher" slimbert train-teacher \
          --base "$mlm" "${DATA[@]}" "${FAST[@]}" --batch-size 32 --lr 1e-4 \
          --epochs "$epochs" --eval-every 0 --patience 2 --seed 42 "${SMOKE_FLAGS[@]}"
        for seed in $SEEDS; do
          for row in "${TRIPLE_ORDER[@]}"; do
            need "$RUNS/distilbert-$row" distilbert || continue
            cell "$task-distilbert-$row-seed$seed" "$RUNS/$task-distilbert-$row-seed$seed" \
              slimbert compress kd --teacher "$RUNS/$task-mlm-teacher" \
              --student-init "$RUNS/distilbert-$row" --layers "$DISTILBERT_LAYERS" \
              "${DATA[@]}" "${FAST[@]}" --batch-size 32 --lr 1e-4 --temperature 2 --alpha 0.5 \
              --max-steps "$ONE_STAGE_STEPS" --eval-every "$EVAL_EVERY" --patience 3 \
              --seed "$seed" "${SMOKE_FLAGS[@]}"
          done
        done
      done ;;
    *) echo "[$TAG] unknown stage $stage"; exit 1 ;;
  esac
done
