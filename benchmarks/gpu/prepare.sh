#!/usr/bin/env bash
# Prepare, on a machine with PyPI, everything the GPU host lacks for benchmarks/gpu/run.sh:
# cp312 wheels of slimbert's dependencies where the host's versions don't fit
# (requirements-train.txt) and onnxruntime-gpu (requirements-ort.txt), a wheel of slimbert itself,
# and SST-2 train/dev. They are recompressed, cut into parts that each travel with one command
# beside the working tree, and checksummed; the device commands to run are printed at the end.
#
#   bash benchmarks/gpu/prepare.sh                 # downloads ~360 MB the first time (pip's cache after)
#   bash benchmarks/gpu/prepare.sh --from-dir DIR  # wheels already in DIR/train/*.whl, DIR/ort/*.whl
#
# Options: --out DIR (default .gpu-bundle, git-ignored), --part-size BYTES (default 56 MiB),
# --data DIR (default ../shared/data/glue/SST-2), --no-slimbert-wheel, --level N (xz preset, 9),
# --refresh (download again although the requirements are unchanged). Archives whose inputs
# are unchanged are reused, so a second run takes seconds and gives the same parts.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/benchmarks/gpu"
OUT="$ROOT/.gpu-bundle"
PART_SIZE=$((56 * 1024 * 1024))
FROM_DIR=""
DATA="$ROOT/../shared/data/glue/SST-2"
SLIMBERT_WHEEL=1
LEVEL=9
REFRESH=0
EXTRA=()
if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=${PYTHON:-$ROOT/.venv/bin/python}; else PYTHON=${PYTHON:-python3}; fi

die() { echo "prepare.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --part-size) PART_SIZE=$2; shift 2 ;;
    --from-dir) FROM_DIR=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --no-slimbert-wheel) SLIMBERT_WHEEL=0; shift ;;
    --refresh) REFRESH=1; shift ;;
    --level) LEVEL=$2; shift 2 ;;
    --allow-small-parts) EXTRA+=(--allow-small-parts); shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ -d "$DATA" ] || die "--data $DATA: no such folder (SST-2's train.tsv and dev.tsv)"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

STAMP=$(cat "$HERE/requirements-train.txt" "$HERE/requirements-ort.txt" | sha256sum | cut -c1-64)
if [ -z "$FROM_DIR" ] && [ "$REFRESH" = 0 ] && [ "$(cat "$OUT/wheels/requirements.sha256" 2>/dev/null)" = "$STAMP" ]; then
  echo "wheels: reusing $OUT/wheels (the requirements are unchanged; --refresh downloads again)"
  FROM_DIR="$OUT/wheels"
fi
if [ -z "$FROM_DIR" ]; then
  # --no-deps: each list names every package the host needs, no more (the host's own packages
  # stay in use). One fresh folder per stage, so no wheel of an older version lingers.
  PLATFORMS=()
  for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do
    PLATFORMS+=(--platform "$p")
  done
  for stage in train ort; do
    rm -rf "$OUT/wheels/$stage.new"
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --python-version 3.12 --implementation cp --abi cp312 "${PLATFORMS[@]}" \
      -r "$HERE/requirements-$stage.txt" -d "$OUT/wheels/$stage.new"
    rm -rf "$OUT/wheels/$stage"
    mv "$OUT/wheels/$stage.new" "$OUT/wheels/$stage"
  done
  echo "$STAMP" >"$OUT/wheels/requirements.sha256"
  FROM_DIR="$OUT/wheels"
fi

WHEEL_ARGS=()
if [ "$SLIMBERT_WHEEL" = 1 ]; then
  # Built from a copy of the files that travel to the host (tracked and untracked-not-ignored),
  # so the wheel holds exactly the code run.sh finds there, and nothing is written into src/.
  SCRATCH=$(mktemp -d)
  trap 'rm -rf "$SCRATCH"' EXIT
  (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
      [ -f "$f" ] && mkdir -p "$SCRATCH/tree/$(dirname "$f")" && cp -p "$f" "$SCRATCH/tree/$f"
    done)
  if ! "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation -w "$SCRATCH/dist" "$SCRATCH/tree" 2>"$SCRATCH/err"; then
    "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$SCRATCH/dist" "$SCRATCH/tree" \
      || { cat "$SCRATCH/err" >&2; die "could not build slimbert's wheel"; }
  fi
  WHEEL_ARGS=(--slimbert-wheel "$(ls "$SCRATCH"/dist/slimbert-*.whl)")
fi

"$PYTHON" "$HERE/bundle.py" prepare --wheels "$FROM_DIR" --data "$DATA" --out "$OUT" \
  --repo "$ROOT" --part-size "$PART_SIZE" --level "$LEVEL" "${WHEEL_ARGS[@]}" "${EXTRA[@]}"
