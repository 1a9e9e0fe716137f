#!/usr/bin/env python3
"""Pack what the GPU host lacks into checksummed parts here, and put it back together there.

The GPU host takes at most 64 MiB per command (the working tree plus the ignored paths a command
carries) and keeps ignored files between commands only while it stays up. So the wheels are
unpacked, recompressed by file kind, laid end to end as one byte stream and cut into parts that
each travel with one command:

    stream  | train-plain | train-x86 | train-weights | ort-plain | ort-x86 |   (.tar.xz each)
    parts   |<--- part01 --->|<--- part02 --->|<--- part03 --->| ... |<- partNN ->|

    prepare   (here)  wheels/<stage>/*.whl + data -> archives -> parts, meta/manifest.json
    receive   (host)  check each part that arrived against the manifest; keep it in the stash
    assemble  (host)  once every part of a stage is in: check each archive, unpack it, check
                      every file against its wheel's RECORD, rebuild the wheels, pip install
                      them into a private --target
    src-hash          sha256 of slimbert's sources (src/slimbert, pyproject.toml), both sides

A stage is complete, and can be installed, as soon as its parts are in: the training stage comes
first in the stream, so training starts while onnxruntime-gpu is still on its way.

Standard library only: it runs with the GPU host's Python as it is.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import lzma
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FORMAT = "slimbert-gpu-bundle/1"
ARCHIVE_LAYOUT = 2  # part of every archive's fingerprint: bump when write_tar changes
STAGES = ("train", "ort")  # stream order: a stage is usable once its parts are in
MIB = 1 << 20
COMMAND_LIMIT = 64 * MIB  # what one command carries: working tree + carried paths
DEFAULT_PART_SIZE = 56 * MIB
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth"}
CHUNK = 4 * MIB

# Filter chains by file kind (what each saved on the real bundle: benchmarks/gpu/README.md).
# x86: the BCJ filter turns relative call targets into absolute ones, so machine code repeats.
# weights: lp=2/pb=2 give each byte of a 4-byte float its own literal and position context.
CODECS = {
    "plain": ([], {}),
    "x86": (["--x86"], {}),
    "weights": ([], {"lc": 2, "lp": 2, "pb": 2}),
}

# Phases of run.sh in the order they run, the stage each needs installed, and planned seconds on
# an H100 (README). plan() packs them into commands of at most COMMAND_BUDGET_S seconds.
PHASES = (
    ("env", None, 15),
    ("install-train", "train", 20),
    ("train", "train", 240),
    ("install-ort", "ort", 25),
    ("check", "ort", 15),
    ("tests", "ort", 40),
    ("export", "ort", 60),
    ("bench", "ort", 100),
    ("serve", "ort", 15),
)
COMMAND_BUDGET_S = 480


class BundleError(Exception):
    """A problem with the bundle: one line naming the thing and the fix."""


# ---------------------------------------------------------------------------------------------
# shared helpers


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def record_hash(data_or_path: bytes | Path) -> str:
    """A wheel RECORD hash: sha256=<urlsafe base64, no padding>."""
    if isinstance(data_or_path, Path):
        digest = hashlib.sha256()
        with open(data_or_path, "rb") as handle:
            while block := handle.read(CHUNK):
                digest.update(block)
    else:
        digest = hashlib.sha256(data_or_path)
    return "sha256=" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def src_hash(root: Path) -> str:
    """sha256 over slimbert's sources as they travel: src/slimbert/** (no caches) and
    pyproject.toml, by relative path. Equal here and on the host iff the code is the same."""
    digest = hashlib.sha256()
    files = [root / "pyproject.toml"]
    for path in sorted((root / "src" / "slimbert").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files.append(path)
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def wheel_record(wheel_dir: Path) -> tuple[str, dict[str, tuple[str, str]]]:
    """The RECORD path (relative) and {file: (hash, size)} of an unpacked wheel."""
    records = list(wheel_dir.glob("*.dist-info/RECORD"))
    if len(records) != 1:
        raise BundleError(
            f"{wheel_dir.name}: expected one *.dist-info/RECORD, found {len(records)}"
        )
    entries = {}
    with open(records[0], newline="") as handle:
        for row in csv.reader(handle):
            if row:
                entries[row[0]] = (row[1] if len(row) > 1 else "", row[2] if len(row) > 2 else "")
    return records[0].relative_to(wheel_dir).as_posix(), entries


def verify_wheel_dir(wheel_dir: Path) -> int:
    """Every file of an unpacked wheel matches its RECORD, and nothing is missing or extra.
    Returns the number of files checked."""
    record_path, entries = wheel_record(wheel_dir)
    present = {p.relative_to(wheel_dir).as_posix() for p in wheel_dir.rglob("*") if p.is_file()}
    missing = sorted(set(entries) - present)
    extra = sorted(present - set(entries))
    if missing or extra:
        raise BundleError(
            f"{wheel_dir.name}: files differ from its RECORD (missing {missing[:3]}, "
            f"extra {extra[:3]}); rerun prepare.sh and send every part again"
        )
    for name, (expected, size) in entries.items():
        if name == record_path or not expected:
            continue
        path = wheel_dir / name
        if (size and int(size) != path.stat().st_size) or record_hash(path) != expected:
            raise BundleError(
                f"{wheel_dir.name}: {name} does not match its RECORD hash; the bundle is "
                "corrupt: rerun prepare.sh and send every part again"
            )
    return len(entries)


def load_manifest(bundle: Path) -> dict:
    path = bundle / "meta" / "manifest.json"
    if not path.is_file():
        raise BundleError(f"{path}: no manifest; carry the bundle's meta folder with every command")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT}")
    return manifest


# ---------------------------------------------------------------------------------------------
# prepare (here)


@dataclass
class Entry:
    arcname: str  # path inside the stage, e.g. wheels/x-1.0-py3-none-any.whl/x/__init__.py
    path: Path
    size: int
    codec: str


def codec_of(path: Path, size: int) -> str:
    if path.suffix in WEIGHT_SUFFIXES and size >= MIB:
        return "weights"
    with open(path, "rb") as handle:
        return "x86" if handle.read(4) == b"\x7fELF" else "plain"


def unpack_stage(
    stage: str, wheels: list[Path], data_dir: Path | None, root: Path
) -> tuple[list[dict], list[dict]]:
    """Unpack the stage's wheels under root/wheels/<wheel file name>/ and copy its data under
    root/data/<name>/; return what the manifest says of each wheel and data file."""
    wheel_info: list[dict] = []
    names: dict[str, str] = {}
    for wheel in wheels:
        dist = wheel.name.split("-")[0].lower().replace("_", "-")
        if dist in names:
            raise BundleError(f"two wheels of {dist}: {names[dist]} and {wheel.name}; keep one")
        names[dist] = wheel.name
        target = root / "wheels" / wheel.name
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
        count = verify_wheel_dir(target)
        record_path, _ = wheel_record(target)
        wheel_info.append(
            {
                "stage": stage,
                "file": wheel.name,
                "bytes": wheel.stat().st_size,
                "sha256": sha256_file(wheel),
                "record": record_path,
                "record_sha256": sha256_file(target / record_path),
                "files": count,
                "unpacked_bytes": sum(p.stat().st_size for p in target.rglob("*") if p.is_file()),
            }
        )
    data_info: list[dict] = []
    if data_dir is not None:
        for path in sorted(p for p in data_dir.iterdir() if p.is_file()):
            target = root / "data" / data_dir.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            data_info.append(
                {
                    "stage": stage,
                    "path": target.relative_to(root).as_posix(),
                    "bytes": target.stat().st_size,
                    "sha256": sha256_file(target),
                }
            )
    return wheel_info, data_info


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 315532800  # 1980-01-01, the earliest time a zip (wheel) can hold
    info.mode = 0o755 if info.mode & 0o111 else 0o644
    return info


def write_tar(entries: list[Entry], path: Path) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            tar.add(entry.path, arcname=entry.arcname, recursive=False, filter=_normalised)


def compress(source: Path, target: Path, codec: str, level: int, threads: int) -> list[str]:
    """xz-compress with the codec's filter chain: the xz tool where there is one (threads),
    else Python's lzma (one thread, same chain). Returns the chain as xz options."""
    extra, options = CODECS[codec]
    lzma2 = ",".join([f"preset={level}", *(f"{k}={v}" for k, v in options.items())])
    args = [*extra, f"--lzma2={lzma2}"]
    xz = shutil.which("xz")
    if xz:
        with open(source, "rb") as src, open(target, "wb") as dst:
            subprocess.run(
                [xz, "--format=xz", "--check=crc64", f"--threads={threads}", *args, "-c"],
                stdin=src,
                stdout=dst,
                check=True,
            )
    else:
        filters = ([{"id": lzma.FILTER_X86}] if codec == "x86" else []) + [
            {"id": lzma.FILTER_LZMA2, "preset": level, **options}
        ]
        with (
            open(source, "rb") as src,
            lzma.open(
                target, "wb", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=filters
            ) as dst,
        ):
            shutil.copyfileobj(src, dst, CHUNK)
    return args


def build_archives(stage_dir: Path, archives_dir: Path, level: int, threads: int) -> list[dict]:
    """One tar.xz per stage and file kind, reused when its inputs and chain are unchanged."""
    archives = []
    for stage in STAGES:
        root = stage_dir / stage
        if not root.is_dir():
            continue
        entries = list(_entries_of(stage_dir, stage))
        for codec in CODECS:
            chosen = [e for e in entries if e.codec == codec]
            if not chosen:
                continue
            name = f"{stage}-{codec}.tar.xz"
            target = archives_dir / name
            fingerprint = hashlib.sha256(
                json.dumps(
                    [[e.arcname, e.size, sha256_file(e.path)] for e in chosen]
                    + [codec, level, ARCHIVE_LAYOUT]
                ).encode()
            ).hexdigest()
            stamp = archives_dir / f"{name}.inputs"
            if not (target.is_file() and stamp.is_file() and stamp.read_text() == fingerprint):
                started = time.monotonic()
                with tempfile.TemporaryDirectory(dir=archives_dir) as scratch:
                    tar_path = Path(scratch) / "stage.tar"
                    write_tar(chosen, tar_path)
                    compress(tar_path, target, codec, level, threads)
                    tar_bytes = tar_path.stat().st_size
                stamp.write_text(fingerprint)
                (archives_dir / f"{name}.tarbytes").write_text(str(tar_bytes))
                print(
                    f"  {name}: {tar_bytes / MIB:.1f} MiB tar -> "
                    f"{target.stat().st_size / MIB:.1f} MiB in {time.monotonic() - started:.0f} s",
                    flush=True,
                )
            else:
                print(f"  {name}: unchanged, reused", flush=True)
            extra, options = CODECS[codec]
            lzma2 = ",".join([f"preset={level}", *(f"{k}={v}" for k, v in options.items())])
            archives.append(
                {
                    "name": name,
                    "stage": stage,
                    "codec": codec,
                    "xz_filters": [*extra, f"--lzma2={lzma2}"],
                    "files": len(chosen),
                    "input_bytes": sum(e.size for e in chosen),
                    "tar_bytes": int((archives_dir / f"{name}.tarbytes").read_text()),
                    "bytes": target.stat().st_size,
                    "sha256": sha256_file(target),
                    "path": target,
                }
            )
    return archives


def _entries_of(stage_dir: Path, stage: str) -> Iterator[Entry]:
    root = stage_dir / stage
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        size = path.stat().st_size
        yield Entry(path.relative_to(root).as_posix(), path, size, codec_of(path, size))


def cut_parts(archives: list[dict], out: Path, part_size: int) -> list[dict]:
    """Lay the archives end to end and cut the stream into parts of at most part_size bytes,
    each in its own folder out/partNN/ (one folder = one carried path)."""
    total = sum(a["bytes"] for a in archives)
    count = max(1, math.ceil(total / part_size))
    width = max(2, len(str(count)))
    parts: list[dict] = []
    offset = 0
    sources = iter(archives)
    current = next(sources)
    handle = open(current["path"], "rb")
    try:
        for index in range(1, count + 1):
            label = f"part{index:0{width}d}"
            folder = out / label
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            path = folder / f"bundle.{label}"
            digest = hashlib.sha256()
            written = 0
            with open(path, "wb") as part:
                while written < part_size:
                    block = handle.read(min(CHUNK, part_size - written))
                    if not block:
                        handle.close()
                        current = next(sources, None)
                        if current is None:
                            break
                        handle = open(current["path"], "rb")
                        continue
                    part.write(block)
                    digest.update(block)
                    written += len(block)
            parts.append(
                {
                    "index": index,
                    "name": label,
                    "path": f"{label}/bundle.{label}",
                    "offset": offset,
                    "bytes": written,
                    "sha256": digest.hexdigest(),
                }
            )
            offset += written
    finally:
        handle.close()
    if offset != total:
        raise BundleError(f"cut {offset} bytes of a {total}-byte stream; rerun prepare.sh")
    return parts


def stage_parts(archives: list[dict], parts: list[dict]) -> dict[str, list[int]]:
    """The parts each stage's archives lie in."""
    needed: dict[str, set[int]] = {}
    for archive in archives:
        start, end = archive["offset"], archive["offset"] + archive["bytes"]
        for part in parts:
            if part["offset"] < end and start < part["offset"] + part["bytes"]:
                needed.setdefault(archive["stage"], set()).add(part["index"])
    return {stage: sorted(indices) for stage, indices in needed.items()}


def plan(parts: list[dict], stages: dict[str, list[int]], carry_root: str) -> list[dict]:
    """Commands for the GPU host: one per part (each carrying meta and that part), running every
    phase whose stage is complete by then, in order, at most COMMAND_BUDGET_S planned seconds
    per command; the phases left over go into commands that carry meta alone."""
    ready_after = {stage: max(indices) for stage, indices in stages.items()}
    commands: list[dict] = []
    pending = list(PHASES)
    for part in parts:
        phases, budget = [], COMMAND_BUDGET_S
        while pending:
            name, stage, seconds = pending[0]
            usable = stage is None or (stage in ready_after and ready_after[stage] <= part["index"])
            if not usable or (phases and seconds > budget):
                break
            phases.append(name)
            budget -= seconds
            pending.pop(0)
        commands.append(
            {
                "carry": [f"{carry_root}/meta", f"{carry_root}/{part['name']}"],
                "phases": phases or ["receive"],
                "planned_s": COMMAND_BUDGET_S - budget,
            }
        )
    while pending:
        phases, budget = [], COMMAND_BUDGET_S
        while pending and (not phases or pending[0][2] <= budget):
            phases.append(pending[0][0])
            budget -= pending[0][2]
            pending.pop(0)
        commands.append(
            {
                "carry": [f"{carry_root}/meta"],
                "phases": phases,
                "planned_s": COMMAND_BUDGET_S - budget,
            }
        )
    for number, command in enumerate(commands, 1):
        command["command"] = number
    return commands


def tree_bytes(repo: Path) -> int | None:
    """Bytes of the working tree as it travels: tracked and untracked-not-ignored files."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=repo,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    total = 0
    for name in listed.decode().split("\0"):
        path = repo / name
        if name and path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def git_revision(repo: Path) -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def prepare(args: argparse.Namespace) -> dict:
    out: Path = args.out.resolve()
    repo: Path = args.repo.resolve()
    if args.part_size < MIB // 16 and not args.allow_small_parts:
        raise BundleError(f"--part-size {args.part_size}: too small for a real bundle")
    build = out / "build"
    stage_dir = build / "stage"
    shutil.rmtree(stage_dir, ignore_errors=True)
    archives_dir = build / "archives"
    archives_dir.mkdir(parents=True, exist_ok=True)
    wheel_info: list[dict] = []
    data_info: list[dict] = []
    for stage in STAGES:
        wheels = (
            sorted((args.wheels / stage).glob("*.whl")) if (args.wheels / stage).is_dir() else []
        )
        data = args.data if stage == STAGES[0] else None
        if not wheels and data is None:
            continue
        wheels_done, data_done = unpack_stage(stage, wheels, data, stage_dir / stage)
        wheel_info += wheels_done
        data_info += data_done
    unknown = (
        sorted(p.name for p in args.wheels.iterdir() if p.is_dir() and p.name not in STAGES)
        if args.wheels.is_dir()
        else []
    )
    if unknown:
        raise BundleError(
            f"{args.wheels}: unknown stage folders {unknown}; use {', '.join(STAGES)}"
        )
    if not wheel_info:
        raise BundleError(f"{args.wheels}: no wheels under {'/, '.join(STAGES)}/")
    print("recompressing (xz, filter chain per file kind):", flush=True)
    archives = build_archives(stage_dir, archives_dir, args.level, args.threads)
    offset = 0
    for archive in archives:
        archive["offset"] = offset
        offset += archive["bytes"]
    for stale in out.glob("part*"):
        if stale.is_dir():
            shutil.rmtree(stale)
    parts = cut_parts(archives, out, args.part_size)
    shutil.rmtree(stage_dir, ignore_errors=True)  # half a GB unpacked; the archives are kept
    stages = stage_parts(archives, parts)
    stream = hashlib.sha256()
    for part in parts:
        with open(out / part["path"], "rb") as handle:
            while block := handle.read(CHUNK):
                stream.update(block)

    meta = out / "meta"
    shutil.rmtree(meta, ignore_errors=True)
    meta.mkdir(parents=True)
    slimbert = None
    if args.slimbert_wheel is not None:
        shutil.copyfile(args.slimbert_wheel, meta / args.slimbert_wheel.name)
        slimbert = {
            "file": args.slimbert_wheel.name,
            "sha256": sha256_file(meta / args.slimbert_wheel.name),
            "src_sha256": src_hash(repo),
        }

    try:
        carry_root = out.relative_to(repo).as_posix()
    except ValueError:
        carry_root = out.name
    wheel_bytes = sum(w["bytes"] for w in wheel_info)
    data_bytes = sum(d["bytes"] for d in data_info)
    tree = tree_bytes(repo)
    manifest = {
        "format": FORMAT,
        "bundle_id": stream.hexdigest()[:16],
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_revision": git_revision(repo),
        "part_size": args.part_size,
        "stream_bytes": offset,
        "stream_sha256": stream.hexdigest(),
        "parts": parts,
        "archives": [{k: v for k, v in a.items() if k != "path"} for a in archives],
        "stages": stages,
        "wheels": wheel_info,
        "data": data_info,
        "slimbert_wheel": slimbert,
        "sizes": {
            "wheels_bytes": wheel_bytes,
            "data_bytes": data_bytes,
            "parts_if_sent_as_wheels": math.ceil((wheel_bytes + data_bytes) / args.part_size),
            "recompressed_bytes": offset,
            "parts": len(parts),
            "working_tree_bytes": tree,
        },
        "plan": plan(parts, stages, carry_root),
    }
    (meta / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    lines = [f"{p['sha256']}  {p['path']}" for p in parts]
    if slimbert:
        lines.append(f"{slimbert['sha256']}  meta/{slimbert['file']}")
    (meta / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    report(manifest, out)
    return manifest


def report(manifest: dict, out: Path) -> None:
    sizes = manifest["sizes"]
    part_size = manifest["part_size"]
    print(f"\nbundle {manifest['bundle_id']} in {out}")
    print(
        f"  wheels as downloaded  {sizes['wheels_bytes'] / MIB:8.1f} MiB "
        f"(+ data {sizes['data_bytes'] / MIB:.1f} MiB) -> {sizes['parts_if_sent_as_wheels']} parts"
    )
    for archive in manifest["archives"]:
        print(
            f"  {archive['name']:<22}{archive['bytes'] / MIB:8.1f} MiB  from "
            f"{archive['input_bytes'] / MIB:.1f} MiB  ({' '.join(archive['xz_filters'])})"
        )
    print(
        f"  recompressed stream   {sizes['recompressed_bytes'] / MIB:8.1f} MiB -> "
        f"{sizes['parts']} parts of at most {part_size / MIB:.1f} MiB"
    )
    for stage, indices in manifest["stages"].items():
        print(f"  stage {stage}: parts {indices[0]}..{indices[-1]}")
    meta_bytes = sum(p.stat().st_size for p in (out / "meta").iterdir())
    largest = max(p["bytes"] for p in manifest["parts"])
    tree = sizes["working_tree_bytes"]
    if tree is not None:
        load = tree + meta_bytes + largest
        print(
            f"  one command carries   {load / MIB:8.1f} MiB = working tree {tree / MIB:.1f} "
            f"+ meta {meta_bytes / MIB:.2f} + part {largest / MIB:.1f} (limit 64)"
        )
        if load > COMMAND_LIMIT:
            print(
                "WARNING: over the 64 MiB a command carries; rerun with --part-size "
                f"{COMMAND_LIMIT - tree - meta_bytes - 2 * MIB}",
                file=sys.stderr,
            )
    print(
        "\nDevice commands, in order, back to back "
        "(the host keeps carried files only while it stays up):"
    )
    for command in manifest["plan"]:
        print(f"  {command['command']}. carry {json.dumps(command['carry'])}")
        print(
            f'     bash benchmarks/gpu/run.sh "$OUT" {" ".join(command["phases"])}'
            f"    (~{command['planned_s']} s planned)"
        )


# ---------------------------------------------------------------------------------------------
# receive and assemble (host)


def stash_dir(stash: Path, manifest: dict) -> Path:
    return stash / manifest["bundle_id"]


def locate_part(part: dict, bundle: Path, stash: Path) -> Path | None:
    for candidate in (stash / f"bundle.{part['name']}", bundle / part["path"]):
        if candidate.is_file():
            return candidate
    return None


def receive(bundle: Path, stash_root: Path) -> list[int]:
    """Check every part present in the bundle folder and keep it in the stash; print which
    parts are in. A part that fails its checksum stops everything."""
    manifest = load_manifest(bundle)
    stash = stash_dir(stash_root, manifest)
    stash.mkdir(parents=True, exist_ok=True)
    for part in manifest["parts"]:
        arrived = bundle / part["path"]
        kept = stash / f"bundle.{part['name']}"
        if arrived.is_file() and not kept.is_file():
            if arrived.stat().st_size != part["bytes"] or sha256_file(arrived) != part["sha256"]:
                raise BundleError(
                    f"{part['path']}: sha256 mismatch against the manifest; the part is corrupt "
                    "or from another prepare.sh run: carry it again"
                )
            scratch = kept.with_suffix(".partial")
            shutil.copyfile(arrived, scratch)
            os.replace(scratch, kept)
    present = [p["index"] for p in manifest["parts"] if (stash / f"bundle.{p['name']}").is_file()]
    missing = [p["name"] for p in manifest["parts"] if p["index"] not in present]
    ready = [s for s, indices in manifest["stages"].items() if set(indices) <= set(present)]
    print(
        f"bundle {manifest['bundle_id']}: {len(present)}/{len(manifest['parts'])} parts in "
        f"(stash {stash}); missing: {', '.join(missing) or 'none'}; "
        f"stages ready: {', '.join(ready) or 'none'}"
    )
    return present


class RangeReader(io.RawIOBase):
    """Bytes [start, start + length) of the stream, read across the part files."""

    def __init__(self, files: list[tuple[int, int, Path]], start: int, length: int):
        self.files, self.position, self.end = files, start, start + length
        self.handle = None
        self.handle_part = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.position >= self.end:
            return 0
        for offset, size, path in self.files:
            if offset <= self.position < offset + size:
                if self.handle_part != path:
                    if self.handle:
                        self.handle.close()
                    self.handle, self.handle_part = open(path, "rb"), path
                self.handle.seek(self.position - offset)
                wanted = min(len(buffer), offset + size - self.position, self.end - self.position)
                data = self.handle.read(wanted)
                buffer[: len(data)] = data
                self.position += len(data)
                return len(data)
        raise BundleError(f"stream byte {self.position} is in no part that arrived")

    def close(self) -> None:
        if self.handle:
            self.handle.close()
        super().close()


def assemble(
    bundle: Path,
    stash_root: Path,
    stage: str,
    site: Path,
    data_dir: Path | None,
    python: str,
    pip_install: bool = True,
) -> list[Path]:
    """Check, unpack and install one stage. Returns the rebuilt wheels."""
    receive(bundle, stash_root)
    manifest = load_manifest(bundle)
    stash = stash_dir(stash_root, manifest)
    if stage not in manifest["stages"]:
        raise BundleError(
            f"stage {stage!r} is not in this bundle (it has {', '.join(manifest['stages'])})"
        )
    files = []
    missing = []
    for part in manifest["parts"]:
        if part["index"] not in manifest["stages"][stage]:
            continue
        path = locate_part(part, bundle, stash)
        if path is None:
            missing.append(part)
        else:
            files.append((part["offset"], part["bytes"], path))
    if missing:
        commands = {
            p["index"]: c["command"]
            for c in manifest["plan"]
            for p in manifest["parts"]
            if any(path.endswith("/" + p["name"]) for path in c["carry"])
        }
        names = ", ".join(f"{p['name']} (command {commands.get(p['index'], '?')})" for p in missing)
        raise BundleError(
            f"stage {stage} needs {names}, which did not arrive or was lost when the host "
            "went back; run those commands again"
        )
    for offset, size, path in files:
        part = next(p for p in manifest["parts"] if p["offset"] == offset)
        if path.stat().st_size != size or sha256_file(path) != part["sha256"]:
            raise BundleError(
                f"{path}: sha256 mismatch against the manifest ({part['name']}); "
                "carry that part again"
            )
    unpacked = site.parent / f".unpacked-{stage}"
    shutil.rmtree(unpacked, ignore_errors=True)
    unpacked.mkdir(parents=True)
    for archive in (a for a in manifest["archives"] if a["stage"] == stage):
        digest = hashlib.sha256()
        with RangeReader(files, archive["offset"], archive["bytes"]) as reader:
            while block := reader.read(CHUNK):
                digest.update(block)
        if digest.hexdigest() != archive["sha256"]:
            raise BundleError(
                f"{archive['name']}: sha256 mismatch after reassembly; "
                f"send every part of stage {stage} again"
            )
        with RangeReader(files, archive["offset"], archive["bytes"]) as reader:
            with lzma.LZMAFile(io.BufferedReader(reader, CHUNK)) as stream:
                with tarfile.open(fileobj=stream, mode="r|") as tar:
                    if hasattr(tarfile, "data_filter"):
                        tar.extractall(unpacked, filter="data")
                    else:  # Python before 3.11.4
                        tar.extractall(unpacked)
    wheels_out = site.parent / f".wheels-{stage}"
    shutil.rmtree(wheels_out, ignore_errors=True)
    wheels_out.mkdir(parents=True)
    rebuilt = []
    for wheel in (w for w in manifest["wheels"] if w["stage"] == stage):
        wheel_dir = unpacked / "wheels" / wheel["file"]
        if sha256_file(wheel_dir / wheel["record"]) != wheel["record_sha256"]:
            raise BundleError(
                f"{wheel['file']}: RECORD differs from the manifest's; "
                f"send every part of stage {stage} again"
            )
        verify_wheel_dir(wheel_dir)
        rebuilt.append(rezip(wheel_dir, wheels_out / wheel["file"], wheel["record"]))
    for item in (d for d in manifest["data"] if d["stage"] == stage):
        source = unpacked / item["path"]
        if sha256_file(source) != item["sha256"]:
            raise BundleError(
                f"{item['path']}: sha256 mismatch; send every part of stage {stage} again"
            )
        if data_dir is not None:
            target = data_dir / Path(item["path"]).relative_to("data")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    if pip_install and rebuilt:
        shutil.rmtree(site, ignore_errors=True)
        site.mkdir(parents=True)
        subprocess.run(
            [
                python,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-index",
                "--no-deps",
                "--no-compile",
                "--disable-pip-version-check",
                "--target",
                str(site),
                *map(str, rebuilt),
            ],
            check=True,
        )
    shutil.rmtree(unpacked, ignore_errors=True)
    print(
        f"stage {stage}: {len(rebuilt)} wheels checked file by file against their RECORD "
        f"and installed into {site}"
    )
    return rebuilt


def slimbert_wheel(bundle: Path, root: Path) -> Path | None:
    """The bundled slimbert wheel if its checksum holds and it was built from the sources in
    `root`; None when they differ (the caller builds one from the tree)."""
    wheel = load_manifest(bundle).get("slimbert_wheel")
    if not wheel:
        print("slimbert: no wheel in the bundle; building one from the tree", file=sys.stderr)
        return None
    path = bundle / "meta" / wheel["file"]
    if not path.is_file() or sha256_file(path) != wheel["sha256"]:
        raise BundleError(f"{path}: missing or sha256 mismatch; carry the meta folder again")
    here = src_hash(root)
    if here != wheel["src_sha256"]:
        print(
            f"slimbert: the tree's sources ({here[:12]}) differ from the bundled wheel's "
            f"({wheel['src_sha256'][:12]}); building one from the tree",
            file=sys.stderr,
        )
        return None
    print(f"slimbert: {wheel['file']} holds the tree's sources ({here[:12]})", file=sys.stderr)
    return path


def rezip(wheel_dir: Path, target: Path, record: str) -> Path:
    """A wheel again (stored, not deflated: it is unpacked at once), RECORD last."""
    names = sorted(p.relative_to(wheel_dir).as_posix() for p in wheel_dir.rglob("*") if p.is_file())
    names.remove(record)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in [*names, record]:
            path = wheel_dir / name
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (path.stat().st_mode & 0xFFFF) << 16  # keeps the x bits
            with open(path, "rb") as source, archive.open(info, "w") as sink:
                shutil.copyfileobj(source, sink, CHUNK)
    return target


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="wheels + data -> parts and manifest (here)")
    p.add_argument(
        "--wheels",
        type=Path,
        required=True,
        help="folder with one subfolder per stage (train, ort) of .whl files",
    )
    p.add_argument(
        "--data", type=Path, help="data folder to ship with the train stage (e.g. SST-2)"
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2])
    p.add_argument("--part-size", type=int, default=DEFAULT_PART_SIZE)
    p.add_argument("--allow-small-parts", action="store_true", help="for tests: parts below 4 MiB")
    p.add_argument("--slimbert-wheel", type=Path)
    p.add_argument("--level", type=int, default=9, choices=range(0, 10))
    p.add_argument("--threads", type=int, default=0, help="xz threads (0: one per core)")
    r = commands.add_parser("receive", help="check and stash the parts that arrived (host)")
    r.add_argument("--bundle", type=Path, required=True)
    r.add_argument("--stash", type=Path, required=True)
    a = commands.add_parser("assemble", help="check, unpack and install one stage (host)")
    a.add_argument("--bundle", type=Path, required=True)
    a.add_argument("--stash", type=Path, required=True)
    a.add_argument("--stage", choices=STAGES, required=True)
    a.add_argument("--site", type=Path, required=True, help="pip --target folder (replaced)")
    a.add_argument("--data-dir", type=Path, help="where the stage's data files go")
    a.add_argument("--python", default=sys.executable)
    s = commands.add_parser("src-hash", help="sha256 of slimbert's sources")
    s.add_argument("root", type=Path)
    w = commands.add_parser("slimbert-wheel", help="print the bundled slimbert wheel if usable")
    w.add_argument("--bundle", type=Path, required=True)
    w.add_argument("--root", type=Path, required=True, help="the working tree on this machine")
    m = commands.add_parser("manifest-get", help="print one top-level manifest field as JSON")
    m.add_argument("--bundle", type=Path, required=True)
    m.add_argument("field")
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            prepare(args)
        elif args.command == "receive":
            receive(args.bundle, args.stash)
        elif args.command == "assemble":
            assemble(args.bundle, args.stash, args.stage, args.site, args.data_dir, args.python)
        elif args.command == "src-hash":
            print(src_hash(args.root))
        elif args.command == "slimbert-wheel":
            print(slimbert_wheel(args.bundle, args.root) or "")
        elif args.command == "manifest-get":
            print(json.dumps(load_manifest(args.bundle).get(args.field)))
    except BundleError as error:
        print(f"bundle: {error}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        print(
            f"bundle: {' '.join(map(str, error.cmd[:4]))} … "
            f"failed with exit status {error.returncode}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
