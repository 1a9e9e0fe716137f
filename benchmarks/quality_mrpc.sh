#!/usr/bin/env bash
# MRPC at the students' own budget: the seed-000 matrix of recipes/quality-mrpc-cpu.yaml.
#
# The experiment resumes from its cells (a rerun skips every finished one). Models stay outside
# the checkout ($RUNS, default ~/slimbert-runs/quality-mrpc); every minute, and at the end, the
# finished cells, the table and the plot are copied to $RESULTS so they can be committed as
# they come.
#
# Usage, from the repository root with the venv active:
#   bash benchmarks/quality_mrpc.sh
set -euo pipefail
RUNS=${RUNS:-$HOME/slimbert-runs/quality-mrpc}
RESULTS=${RESULTS:-benchmarks/results/quality-mrpc}
RECIPE=${RECIPE:-benchmarks/recipes/quality-mrpc-cpu.yaml}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)

finished=0
copy() {
  [ -d "$RUNS/cells" ] && mkdir -p "$RESULTS/cells" && cp -p "$RUNS"/cells/*.json "$RESULTS/cells/" 2>/dev/null
  if [ "$finished" = 1 ]; then
    # a run in a reused folder (e.g. a hard-linked copy of another run's) finds that run's
    # cells there too: the results keep the cells this recipe names (experiment.json)
    python - "$RUNS/experiment.json" "$RESULTS/cells" <<'PY'
import json, sys
from pathlib import Path
named = set(json.loads(Path(sys.argv[1]).read_text())["cells"])
for cell in Path(sys.argv[2]).glob("*.json"):
    if cell.stem not in named:
        cell.unlink()
PY
  fi
  for f in experiment.md experiment.json; do [ -f "$RUNS/$f" ] && cp -p "$RUNS/$f" "$RESULTS/"; done
  [ -d "$RUNS/report" ] && mkdir -p "$RESULTS/report" && cp -p "$RUNS"/report/*.png "$RESULTS/report/" 2>/dev/null
  return 0
}
( while sleep 60; do copy; done ) &
copier=$!
trap 'kill $copier 2>/dev/null; copy' EXIT
{ echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
  echo "command: slimbert experiment $RECIPE --out $RUNS"
  echo "started: $(date -u +%FT%TZ) at $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >> "$RESULTS/runs.log"
slimbert experiment "$RECIPE" --out "$RUNS"
finished=1
echo "finished: $(date -u +%FT%TZ)" >> "$RESULTS/runs.log"
