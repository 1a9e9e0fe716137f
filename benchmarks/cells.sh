# Sourced by the long benchmark scripts: one resumable training cell.
#
#   cell NAME OUT command...
#
# runs `command... --out OUT` unless OUT already holds a finished model (slimbert.json), logs to
# $RUNS/NAME.log, resumes from OUT/training-state when a stopped run left one, and records the
# cell's budget in $RUNS/NAME.budget.json: wall-clock (every leg's, when it resumed: a leg that a
# kill ended counts to its last heartbeat, written once a minute to $RUNS/NAME.legs.now), peak
# resident memory (GNU time's maximum RSS of the whole command, the last leg's), whether it resumed, the command and the machine. The finished
# cell's slimbert.json and budget are copied to $RESULTS/cells/ at once, so the figures can be
# committed as they come; a cell that finished after the last commit is copied on the next run.
# The model's config.json goes beside them (NAME.config.json: the shape the FLOPs come from).
# A command that outlived its script (the script was killed, the training went on and finished)
# is recorded by the next run that reaches the cell: its last leg ends at its slimbert.json's
# time, and the budget says "orphaned": true.
#
# The caller sets RUNS, RESULTS, ONLY (a regex of the cell names to run; others are skipped)
# and TAG (the prefix of the progress lines).

cell() {
  local name=$1 out=$2
  shift 2
  if [ -f "$out/slimbert.json" ]; then
    mkdir -p "$RESULTS/cells"
    if [ ! -f "$RUNS/$name.budget.json" ] && [ -f "$RUNS/$name.legs.now" ]; then
      _orphan_budget "$name" "$out" "$@"
    fi
    [ -f "$RESULTS/cells/$name.config.json" ] || cp "$out/config.json" "$RESULTS/cells/$name.config.json"
    if [ ! -f "$RESULTS/cells/$name.json" ]; then
      cp "$out/slimbert.json" "$RESULTS/cells/$name.json"
      if [ -f "$RUNS/$name.budget.json" ]; then cp "$RUNS/$name.budget.json" "$RESULTS/cells/"; fi
      echo "[$TAG] $name: done earlier, its cell copied to $RESULTS/cells"
    else
      echo "[$TAG] $name: done, skipped"
    fi
    return
  fi
  if [[ ! $name =~ ^($ONLY)$ ]]; then return; fi
  mkdir -p "$(dirname "$out")" "$RESULTS/cells" "$RUNS"
  local resume=() resumed=false
  if [ -d "$out/training-state" ]; then resume=(--resume); resumed=true; fi
  echo "[$TAG] $name: $(date -u +%H:%M:%S) start${resume:+ (resuming)}"
  local start seconds peak_kb earlier=0 legs=$RUNS/$name.legs beat
  # a leg a kill ended counts to its last heartbeat (once a minute): the budget is every leg's
  if [ -f "$legs.now" ]; then cat "$legs.now" >> "$legs" && rm -f "$legs.now"; fi
  if ! $resumed; then rm -f "$legs"; fi
  if [ -f "$legs" ]; then earlier=$(awk '{s += $2 - $1} END {print s + 0}' "$legs"); fi
  start=$(date +%s)
  ( while kill -0 $$ 2>/dev/null; do echo "$start $(date +%s)" > "$legs.now"; sleep 60; done ) > /dev/null 2>&1 &
  beat=$!
  local status=0
  /usr/bin/time -f "%M" -o "$RUNS/$name.maxrss" "$@" "${resume[@]}" --out "$out" \
    >> "$RUNS/$name.log" 2>&1 || status=$?
  kill "$beat" 2>/dev/null || true
  echo "$start $(date +%s)" >> "$legs" && rm -f "$legs.now"
  if [ "$status" -ne 0 ]; then echo "[$TAG] $name: FAILED, see $RUNS/$name.log"; return 1; fi
  seconds=$(( $(date +%s) - start + earlier ))
  peak_kb=$(tail -1 "$RUNS/$name.maxrss")
  cp "$out/slimbert.json" "$RESULTS/cells/$name.json"
  cp "$out/config.json" "$RESULTS/cells/$name.config.json"
  _budget "$name" "$seconds" "$peak_kb" "$resumed" false "$@"
  cp "$RUNS/$name.budget.json" "$RESULTS/cells/$name.budget.json"
  echo "[$TAG] $name: $(date -u +%H:%M:%S) done in ${seconds}s"
}

# _budget NAME SECONDS PEAK_KB RESUMED ORPHANED command...: writes $RUNS/NAME.budget.json
_budget() {
  local name=$1 seconds=$2 peak_kb=$3 resumed=$4 orphaned=$5
  shift 5
  # cores: the machine's; threads: what the command ran on (nproc honours OMP_NUM_THREADS)
  printf '{"name": "%s", "wall_seconds": %d, "peak_rss_mib": %d, "resumed": %s, "orphaned": %s, "command": "%s", "machine": "%s", "cores": %d, "threads": %d}\n' \
    "$name" "$seconds" "$(( ${peak_kb:-0} / 1024 ))" "$resumed" "$orphaned" "$*" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(nproc --all)" "$(nproc)" \
    > "$RUNS/$name.budget.json"
}

# the budget of a cell whose command finished after its script was killed: the last heartbeat's
# leg ends when the command wrote slimbert.json; earlier legs count as in a resumed cell
_orphan_budget() {
  local name=$1 out=$2 legs=$RUNS/$1.legs start end earlier=0 resumed=false peak_kb=0
  shift 2
  read -r start _ < "$legs.now"
  end=$(stat -c %Y "$out/slimbert.json")
  if [ -f "$legs" ]; then earlier=$(awk '{s += $2 - $1} END {print s + 0}' "$legs"); resumed=true; fi
  echo "$start $end" >> "$legs" && rm -f "$legs.now"
  if [ -s "$RUNS/$name.maxrss" ]; then peak_kb=$(tail -1 "$RUNS/$name.maxrss"); fi
  _budget "$name" "$(( end - start + earlier ))" "$peak_kb" "$resumed" true "$@"
  cp "$RUNS/$name.budget.json" "$RESULTS/cells/$name.budget.json"
  echo "[$TAG] $name: finished after its script stopped; its budget recorded from its heartbeat"
}
