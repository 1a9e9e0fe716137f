#!/usr/bin/env bash
# The CUDA suite on the GPU host, from the bundle prepare.sh made (benchmarks/gpu/README.md).
#
#   bash benchmarks/gpu/run.sh RESULTS_DIR [PHASE...]    phases run in the order given
#   bash benchmarks/gpu/run.sh --only-assemble RESULTS_DIR   receive + install-train + install-ort
#                                                        without slimbert (the CPU dry run)
# Phases:
#   receive        check the parts that arrived against the manifest, keep them (always runs first)
#   env            nvidia-smi, driver, CUDA, torch, onnxruntime, library versions -> environment.txt
#   install-train  training stage: transformers 4.57 & co, the bundled MiniLM, SST-2, slimbert
#   train          teacher (full SST-2, bf16, max length 64), then a 3-layer kd student
#   install-ort    onnxruntime-gpu, ahead of the image's CPU onnxruntime on PYTHONPATH
#   check          CUDAExecutionProvider first in a session, every node of a test graph on it
#                  (ONNX Runtime's profile), TF32 on/off against the CPU; environment.txt again
#   tests          python -m pytest -m gpu
#   export         the student to ONNX fp32, and --optimize --precision fp16 --provider cuda,
#                  both validated on the whole dev set; the fp16 graph profiled on CUDA
#   bench          slimbert bench --provider cuda (PyTorch eager and ONNX Runtime, IO binding,
#                  batch 1, 8, 32, 128), then the same export on the CPU provider
#   serve          slimbert serve --provider cuda: readiness, one prediction, SIGTERM
#   all            every phase above
# Everything a phase writes goes to $WORK/results/gpu/ (kept across commands while the host stays
# up); each invocation packs that folder into RESULTS_DIR/results.tar.gz beside SUMMARY.md,
# phases.tsv and environment.txt (at most 4 files, whatever the phases).
#
# Environment: PYTHON (python3), WORK (/tmp/slimbert-gpu), BUNDLE (.gpu-bundle), DEADLINE_S (570:
# phases still running then are stopped, so the results come back inside a 600 s command),
# TEACHER_EPOCHS (2), STUDENT_EPOCHS (2), EVAL_EVERY (500), BATCH_SIZES (1,8,32,128),
# BENCH_EXTRA_ARGS (appended to the CUDA bench), FORCE_TRAIN=1 (retrain models already there).
set -euo pipefail

SELF="${BASH_SOURCE[0]}"
ROOT=$(cd "$(dirname "$SELF")/../.." && pwd)
HERE="$ROOT/benchmarks/gpu"
PYTHON=${PYTHON:-python3}
WORK=${WORK:-/tmp/slimbert-gpu}
BUNDLE=${BUNDLE:-$ROOT/.gpu-bundle}
DEADLINE_S=${DEADLINE_S:-570}
TEACHER_EPOCHS=${TEACHER_EPOCHS:-2}
STUDENT_EPOCHS=${STUDENT_EPOCHS:-2}
EVAL_EVERY=${EVAL_EVERY:-500}
BATCH_SIZES=${BATCH_SIZES:-1,8,32,128}
BENCH_EXTRA_ARGS=${BENCH_EXTRA_ARGS:-}
SITE="$WORK/site"
RES="$WORK/results/gpu"
RUNS="$WORK/runs"
DATA="$WORK/data/SST-2"
ALL_PHASES=(env install-train train install-ort check tests export bench serve)

die() { echo "run.sh: $*" >&2; exit 1; }
bundle() { "$PYTHON" "$HERE/bundle.py" "$@"; }
slimbert() { echo "+ slimbert $*"; "$PYTHON" -m slimbert "$@"; }  # the log keeps each command

setup_env() {
  # Private installs ahead of the image's packages: slimbert, then onnxruntime-gpu (so its
  # `onnxruntime` shadows the image's CPU build), then the training stage.
  export PYTHONPATH="$SITE/slimbert:$SITE/ort:$SITE/train${PYTHONPATH:+:$PYTHONPATH}"
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME="$WORK/hf" SLIMBERT_CACHE="$WORK/cache"
  export MPLBACKEND=Agg PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
  # onnxruntime-gpu dlopens libcublas.so.13, libcudnn.so.9, ...: the image has them in the
  # nvidia-* wheels beside torch, which onnxruntime's own preload does not look in from a --target.
  local libs
  libs=$(env -u PYTHONPATH "$PYTHON" - <<'EOF' 2>/dev/null || true
import importlib.util, os
spec = importlib.util.find_spec("nvidia")
dirs = set()
for base in (spec.submodule_search_locations if spec else []):
    for here, _, files in os.walk(base):
        if any(".so" in f for f in files) and os.path.basename(here) == "lib":
            dirs.add(here)
print(":".join(sorted(dirs)))
EOF
)
  if [ -n "$libs" ]; then export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
}

# ------------------------------------------------------------------------------------- phases

phase_receive() {
  bundle receive --bundle "$BUNDLE" --stash "$WORK/parts"
}

capture_environment() {
  local file=$1
  {
    echo "# GPU host environment, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git revision (manifest): $(bundle manifest-get --bundle "$BUNDLE" git_revision 2>/dev/null || echo unknown)"
    echo "PYTHONPATH=$PYTHONPATH"
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    echo; echo "## uname"; uname -a
    echo; echo "## CPU and memory"; (lscpu 2>/dev/null | grep -E 'Model name|^CPU\(s\)|Flags' | cut -c1-400) || true
    free -g 2>/dev/null || true
    echo; echo "## nvidia-smi"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit,pci.bus_id --format=csv 2>&1 || true
    nvidia-smi 2>&1 || true
    echo; echo "## nvcc"; (nvcc --version 2>&1 | tail -2) || echo "nvcc: not on PATH"
    echo; echo "## Python packages as imported (private installs first)"
    "$PYTHON" - <<'EOF' 2>&1 || true
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "transformers", "tokenizers", "huggingface_hub", "accelerate", "optimum",
             "onnx", "onnxruntime", "numpy", "safetensors", "fastapi", "pydantic", "slimbert"):
    try:
        module = importlib.import_module(name)
        print(f"{name:16} {getattr(module, '__version__', '?'):24} {module.__file__}")
    except Exception as error:  # noqa: BLE001 - report and go on
        print(f"{name:16} NOT IMPORTABLE: {type(error).__name__}: {error}")
try:
    import torch
    print("torch.version.cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print("cuda device", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0),
              "SMs", p.multi_processor_count, "memory GiB", round(p.total_memory / 2**30, 1),
              "bf16", torch.cuda.is_bf16_supported())
    else:
        print("torch.cuda.is_available() = False")
except Exception as error:  # noqa: BLE001
    print("torch CUDA query failed:", error)
try:
    import onnxruntime as ort
    print("onnxruntime device", ort.get_device(), "providers", ort.get_available_providers())
except Exception as error:  # noqa: BLE001
    print("onnxruntime query failed:", error)
EOF
    echo; echo "## pip list (image)"
    env -u PYTHONPATH "$PYTHON" -m pip list --disable-pip-version-check 2>/dev/null \
      | grep -iE '^(torch|transformers|tokenizers|huggingface|accelerate|optimum|onnx|numpy|sentence|nvidia-(cublas|cudnn|cuda-runtime)|pytest) ' || true
    echo; echo "## disk"; df -h "$WORK" 2>/dev/null | tail -1 || true
  } >"$file"
  grep -E '^(NVIDIA|name,)|^torch |^onnxruntime |^torch.version|^cuda device|^onnxruntime device' "$file" || true
}

phase_env() {
  capture_environment "$RES/environment.txt"
}

install_slimbert() {
  # The wheel prepare.sh built, if it holds the sources that travelled here (bundle.py
  # slimbert-wheel checks both); else one built here from the tree (offline, the image's
  # setuptools); else, as a last resort, the tree's src/slimbert as it is.
  local wheel scratch target="$SITE/slimbert"
  wheel=$(bundle slimbert-wheel --bundle "$BUNDLE" --root "$ROOT")
  rm -rf "$target"
  if [ -z "$wheel" ]; then
    scratch=$(mktemp -d)
    if "$PYTHON" -m pip wheel --quiet --no-index --no-deps --no-build-isolation \
      --disable-pip-version-check -w "$scratch" "$ROOT"; then
      wheel=$(ls "$scratch"/slimbert-*.whl)
    fi
    rm -rf "$ROOT/build"
  fi
  if [ -n "$wheel" ]; then
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile \
      --disable-pip-version-check --target "$target" "$wheel"
  else
    echo "slimbert: could not build a wheel here; using the tree's src/slimbert on PYTHONPATH" \
      "(no package metadata: rerun prepare.sh just before the run to avoid this)"
    mkdir -p "$target"
    cp -r "$ROOT/src/slimbert" "$target/slimbert"
  fi
}

phase_install_train() {
  bundle assemble --bundle "$BUNDLE" --stash "$WORK/parts" --stage train --site "$SITE/train" \
    --data-dir "$WORK/data" --python "$PYTHON"
  if [ "${SKIP_SLIMBERT:-0}" != 1 ]; then
    install_slimbert
    "$PYTHON" -c 'import slimbert, transformers, tokenizers; print("slimbert", slimbert.__file__, "| transformers", transformers.__version__, "| tokenizers", tokenizers.__version__)'
  fi
}

phase_install_ort() {
  bundle assemble --bundle "$BUNDLE" --stash "$WORK/parts" --stage ort --site "$SITE/ort" --python "$PYTHON"
}

phase_check() {
  capture_environment "$RES/environment.txt"
  mkdir -p "$RES/check"
  "$PYTHON" "$HERE/cuda_proof.py" synthetic "$RES/check" --expect-site "$SITE/ort"
}

phase_tests() {
  mkdir -p "$RES/tests"
  cd "$ROOT"
  # -m gpu overrides the project's `-m 'not slow and not gpu'`; no cache written in the tree.
  "$PYTHON" -m pytest -m gpu -p no:cacheprovider -rA --junitxml "$RES/tests/junit.xml" tests
}

timed() {  # timed NAME command...: wall-clock milliseconds into train/timings.tsv
  local name=$1 start; shift
  start=$(date +%s%N)
  "$@"
  printf '%s\t%s\n' "$name" "$((($(date +%s%N) - start) / 1000000))" >>"$RES/train/timings.tsv"
}

phase_train() {
  mkdir -p "$RES/train" "$RUNS"
  [ -f "$DATA/train.tsv" ] || die "$DATA/train.tsv: missing; run install-train first"
  # The CPU recipe's settings (benchmarks/foundation_sst2.sh) on the full training set, in bf16.
  local common=(--train "$DATA/train.tsv" --eval "$DATA/dev.tsv" --max-length 64 --batch-size 32
    --lr 1e-4 --seed 42 --eval-every "$EVAL_EVERY" --patience 3 --mixed-precision bf16 --no-progress)
  if [ "${FORCE_TRAIN:-0}" = 1 ] || [ ! -f "$RUNS/teacher/slimbert.json" ]; then
    timed teacher slimbert train-teacher --base minilm-l6 "${common[@]}" --epochs "$TEACHER_EPOCHS" \
      --out "$RUNS/teacher"
  else
    echo "teacher: $RUNS/teacher already trained (FORCE_TRAIN=1 retrains)"
  fi
  cp "$RUNS/teacher/slimbert.json" "$RES/train/teacher-slimbert.json"
  if [ "${FORCE_TRAIN:-0}" = 1 ] || [ ! -f "$RUNS/kd-3L/slimbert.json" ]; then
    timed kd-3L slimbert compress kd --teacher "$RUNS/teacher" --layers 3 --temperature 2 \
      --alpha 0.5 "${common[@]}" --epochs "$STUDENT_EPOCHS" --out "$RUNS/kd-3L"
  else
    echo "kd-3L: $RUNS/kd-3L already trained (FORCE_TRAIN=1 retrains)"
  fi
  cp "$RUNS/kd-3L/slimbert.json" "$RES/train/kd-3L-slimbert.json"
}

phase_export() {
  mkdir -p "$RES/export"
  [ -f "$RUNS/kd-3L/slimbert.json" ] || die "$RUNS/kd-3L: no student; run the train phase first"
  rm -rf "$RUNS/kd-3L-onnx" "$RUNS/kd-3L-onnx-fp16"
  slimbert export --model "$RUNS/kd-3L" --eval "$DATA/dev.tsv" --out "$RUNS/kd-3L-onnx"
  cp "$RUNS/kd-3L-onnx/manifest.json" "$RES/export/manifest-kd-3L-onnx.json"
  # The fp16 export validates every step on CUDA, the plain fp32 graph first. If it fails, the
  # phase fails, but bench and serve still run on the fp32 export, and the fp32 graph's
  # placement on CUDA is profiled instead.
  local status=0
  slimbert export --model "$RUNS/kd-3L" --eval "$DATA/dev.tsv" --out "$RUNS/kd-3L-onnx-fp16" \
    --optimize --precision fp16 --provider cuda || status=$?
  if [ "$status" = 0 ]; then
    cp "$RUNS/kd-3L-onnx-fp16/manifest.json" "$RES/export/manifest-kd-3L-onnx-fp16.json"
    "$PYTHON" "$HERE/cuda_proof.py" model "$RUNS/kd-3L-onnx-fp16/model.onnx" "$RES/export" \
      --expect-site "$SITE/ort"
  else
    echo "export: the fp16 export failed (exit $status); profiling the fp32 export on CUDA instead"
    "$PYTHON" "$HERE/cuda_proof.py" model "$RUNS/kd-3L-onnx/model.onnx" "$RES/export" \
      --expect-site "$SITE/ort" || true
  fi
  return "$status"
}

keep_report() {  # keep_report BENCH_DIR RESULT_DIR: the report files, not the exported models
  mkdir -p "$2"
  find "$1" -maxdepth 1 -type f \( -name 'report.*' -o -name '*.png' \) -exec cp {} "$2/" \;
}

served_export() {  # the fp16 export where there is one, else the fp32 one
  if [ -f "$RUNS/kd-3L-onnx-fp16/model.onnx" ]; then echo "$RUNS/kd-3L-onnx-fp16"; else echo "$RUNS/kd-3L-onnx"; fi
}

phase_bench() {
  [ -f "$RUNS/kd-3L-onnx/model.onnx" ] || die "no export; run the export phase first"
  rm -rf "$RUNS/bench-cuda" "$RUNS/bench-cpu"
  local models=(--model "$RUNS/teacher" --model "$RUNS/kd-3L" --model "$RUNS/kd-3L-onnx")
  if [ -f "$RUNS/kd-3L-onnx-fp16/model.onnx" ]; then models+=(--model "$RUNS/kd-3L-onnx-fp16"); fi
  # One run on the GPU: PyTorch eager in fp32 and fp16 (teacher, student) and the exports on
  # ONNX Runtime's CUDA provider, fed from host arrays and through IO binding. --runtime
  # pytorch keeps bench from re-exporting the model folders; the export folders give the ONNX
  # rows.
  # shellcheck disable=SC2086
  slimbert bench --provider cuda --runtime pytorch --torch-precision fp32 --torch-precision fp16 \
    --in-process "${models[@]}" \
    --eval "$DATA/dev.tsv" --batch-sizes "$BATCH_SIZES" --out "$RUNS/bench-cuda" $BENCH_EXTRA_ARGS
  keep_report "$RUNS/bench-cuda" "$RES/bench-cuda"
  # The CPU provider on the same machine, all cores, for scale (fp16 has no CPU kernels).
  slimbert bench --provider cpu --in-process --model "$RUNS/kd-3L-onnx" \
    --eval "$DATA/dev.tsv" --batch-sizes "$BATCH_SIZES" --out "$RUNS/bench-cpu"
  keep_report "$RUNS/bench-cpu" "$RES/bench-cpu"
}

phase_serve() {
  local export_dir port=18765 pid status=0
  export_dir=$(served_export)
  [ -f "$export_dir/model.onnx" ] || die "no export; run the export phase first"
  mkdir -p "$RES/serve"
  echo "serving $export_dir on CUDA"
  slimbert serve "$export_dir" --provider cuda --port "$port" >"$RES/serve/server.log" 2>&1 &
  pid=$!
  "$PYTHON" - "$port" "$RES/serve/responses.json" <<'EOF' || status=$?
import json, sys, time, urllib.request
port, out = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + 90
while True:
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
            if response.status == 200:
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("serve: not ready within 90 s (see server.log)")
    time.sleep(0.5)
body = json.dumps({"texts": ["a gripping , funny film", "a dull , lifeless mess"]}).encode()
request = urllib.request.Request(base + "/v1/predict", body, {"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=30) as response:
    predictions = json.load(response)
with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
    metrics = response.read().decode()
json.dump({"predict": predictions, "metrics_lines": len(metrics.splitlines())}, open(out, "w"), indent=1)
labels = [p["label"] for p in predictions["predictions"]]
print("serve on CUDA answered", labels)
sys.exit(0 if labels == ["1", "0"] else f"serve: expected labels ['1', '0'], got {labels}")
EOF
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return "$status"
}

# ------------------------------------------------------------------------------------- driver

if [ "${1:-}" = __phase ]; then  # one phase, under run_phase's timeout
  setup_env
  "phase_${2//-/_}"
  exit 0
fi

ONLY_ASSEMBLE=0
if [ "${1:-}" = --only-assemble ]; then ONLY_ASSEMBLE=1; shift; fi
[ $# -ge 1 ] || die "usage: run.sh RESULTS_DIR [PHASE...] | run.sh --only-assemble RESULTS_DIR"
RESULTS_DIR=$1; shift
PHASES=("$@")
if [ "$ONLY_ASSEMBLE" = 1 ]; then PHASES=(install-train install-ort); export SKIP_SLIMBERT=1; fi
if [ "${#PHASES[@]}" = 0 ]; then PHASES=(receive); fi
if [ "${PHASES[0]}" = all ]; then PHASES=("${ALL_PHASES[@]}"); fi
for phase in "${PHASES[@]}"; do
  case " receive ${ALL_PHASES[*]} " in *" $phase "*) ;; *) die "unknown phase $phase (see the header of $SELF)" ;; esac
done
mkdir -p "$RESULTS_DIR" "$RES/logs" "$WORK"
RESULTS_DIR=$(cd "$RESULTS_DIR" && pwd)
export PYTHON WORK BUNDLE TEACHER_EPOCHS STUDENT_EPOCHS EVAL_EVERY BATCH_SIZES BENCH_EXTRA_ARGS
STARTED=$(date +%s)
FAILED=()

pack() {
  "$PYTHON" "$HERE/summarize.py" "$RES" "$ROOT" >"$RES/SUMMARY.md" 2>"$RES/logs/summarize.log" || true
  cp "$RES/SUMMARY.md" "$RESULTS_DIR/SUMMARY.md" 2>/dev/null || true
  cp "$RES/phases.tsv" "$RESULTS_DIR/phases.tsv" 2>/dev/null || true
  cp "$RES/environment.txt" "$RESULTS_DIR/environment.txt" 2>/dev/null || true
  tar -czf "$RESULTS_DIR/results.tar.gz" -C "$(dirname "$RES")" "$(basename "$RES")"
}
trap pack EXIT

progress_filter() {  # the logs keep everything; the terminal skips progress-bar redraws
  tr '\r' '\n' | sed -u -E '/(it\/s|s\/it)\]|^[[:space:]]*$/d'
}

run_phase() {
  local phase=$1 left status begin
  left=$((DEADLINE_S - ($(date +%s) - STARTED) - 15))
  if [ "$left" -le 5 ]; then
    echo "== $phase: skipped, the command's deadline (DEADLINE_S=$DEADLINE_S) is reached"
    printf '%s\tskipped\t0\t%s\n' "$phase" "$(date -u +%H:%M:%S)" >>"$RES/phases.tsv"
    FAILED+=("$phase"); return
  fi
  echo "== $phase (at most ${left} s)"
  begin=$(date +%s)
  set +e
  timeout -k 10 "$left" bash "$SELF" __phase "$phase" 2>&1 | tee -a "$RES/logs/$phase.log" | progress_filter
  status=${PIPESTATUS[0]}
  set -e
  printf '%s\t%s\t%s\t%s\n' "$phase" "$([ "$status" = 0 ] && echo ok || echo "failed($status)")" \
    "$(($(date +%s) - begin))" "$(date -u +%H:%M:%S)" >>"$RES/phases.tsv"
  if [ "$status" != 0 ]; then
    FAILED+=("$phase")
    echo "== $phase FAILED (exit $status); its log: results/gpu/logs/$phase.log"
    case "$phase" in receive|install-*) exit 1 ;; esac  # nothing after them can work
  fi
}

[ -f "$RES/phases.tsv" ] || printf 'phase\tstatus\tseconds\tended_utc\n' >"$RES/phases.tsv"
run_phase receive
for phase in "${PHASES[@]}"; do
  [ "$phase" = receive ] || run_phase "$phase"
done
if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "run.sh: failed: ${FAILED[*]} (logs in results.tar.gz, results/gpu/logs/)" >&2
  exit 1
fi
echo "run.sh: ${PHASES[*]}: ok in $(($(date +%s) - STARTED)) s; results in $RESULTS_DIR"
