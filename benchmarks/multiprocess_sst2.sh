#!/usr/bin/env bash
# One process against two on the same CPU: the SST-2 3-layer kd student (the bundled MiniLM's
# first 3 layers, its own tokenizer, taught by the base-size MPNet teacher's soft labels:
# benchmarks/base_teacher.sh's sst2-teacher), with the same 32 rows in every optimiser step — one
# process taking two batches of 16 per step (--grad-accum 2), or two (torchrun, gloo) one each,
# which tests/training/test_multiprocess.py shows to be the same training — and the same seed and budget.
# Each process of the pair runs one thread (OMP_NUM_THREADS=1); the single process runs two.
#
#   1proc   slimbert compress kd ... --batch-size 16 --grad-accum 2     (2 threads)
#   2proc   torchrun --nproc_per_node 2 -m slimbert compress kd ... --batch-size 16  (1 thread each)
#
# benchmarks/summarize_multiprocess.py writes the comparison (dev metric, examples/s from
# train_log.jsonl, wall-clock) to benchmarks/results/multiprocess/README.md. Cells resume
# (benchmarks/cells.sh); run on an otherwise quiet machine: both cells time the same 2 cores.
#
# Usage, from the repository root with the venv active (the teacher from base_teacher.sh):
#   bash benchmarks/multiprocess_sst2.sh
#   RUNS=/tmp/mp RESULTS=/tmp/mp-results EXTRA="--limit 256 --max-steps 4 --eval-every 2" \
#     bash benchmarks/multiprocess_sst2.sh      # a check of the script in a minute or two
set -euo pipefail
GLUE=${GLUE:-../shared/data/glue}
RUNS=${RUNS:-$HOME/slimbert-runs/multiprocess}
RESULTS=${RESULTS:-benchmarks/results/multiprocess}
TEACHER=${TEACHER:-$HOME/slimbert-runs/base-teacher/sst2-teacher}
ONLY=${ONLY:-.*}
TAG=multiprocess
# shellcheck source=benchmarks/cells.sh
source "$(dirname "$0")/cells.sh"

COMMON=(compress kd --teacher "$TEACHER" --student-base minilm-l6 --layers 3
        --train "$GLUE/SST-2/train.tsv" --eval "$GLUE/SST-2/dev.tsv" --max-length 64
        --metric accuracy --mixed-precision auto --group-by-length --no-progress
        --epochs 2 --eval-every 500 --patience 0 --lr 1e-4 --temperature 2 --alpha 0.5 --seed 1)
read -r -a EXTRA_FLAGS <<< "${EXTRA:-}"  # later flags win
COMMON+=("${EXTRA_FLAGS[@]}")

export OMP_NUM_THREADS=2
cell sst2-kd-minilm3L-1proc "$RUNS/sst2-kd-minilm3L-1proc" slimbert "${COMMON[@]}" \
  --batch-size 16 --grad-accum 2
export OMP_NUM_THREADS=1
cell sst2-kd-minilm3L-2proc "$RUNS/sst2-kd-minilm3L-2proc" \
  python -m torch.distributed.run --standalone --nproc_per_node 2 -m slimbert "${COMMON[@]}" \
  --batch-size 16
# examples/s of every logged step (all processes together), from each model's train_log.jsonl
for name in sst2-kd-minilm3L-1proc sst2-kd-minilm3L-2proc; do
  log=$RUNS/$name/train_log.jsonl
  [ -f "$log" ] && python -c "
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if 'examples_per_s' in line]
speeds = [r['examples_per_s'] for r in rows if r.get('examples_per_s')]
json.dump({'steps_logged': len(speeds), 'median': statistics.median(speeds),
           'mean': statistics.fmean(speeds)}, open(sys.argv[2], 'w'))
" "$log" "$RESULTS/cells/$name.speed.json"
done
python benchmarks/summarize_multiprocess.py "$RESULTS"
