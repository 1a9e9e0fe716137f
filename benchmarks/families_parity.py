"""Export parity and attention fusion for every encoder family, on a real eval file.

For each family in tests/family_models.py a small random classifier (4 layers, hidden 64,
4 heads) and a tokenizer of the family's kind (WordPiece, byte-level BPE or Unigram, trained on
the eval file's own sentences) are built offline; then `slimbert.export.onnx.export` runs on
every row of the eval file:

    fp32        the plain export, held to the parity gate: max |Δlogit| ≤ 1e-4, 100 % agreement
    optimize    ONNX Runtime's transformer fusions (CPU preset): fused-op counts, whether
                attention fused and why (slimbert.families), held to the fused gate
    int8        dynamic quantization: label agreement

    python benchmarks/families_parity.py --eval /work/shared/data/glue/SST-2/dev.tsv \
        --out benchmarks/results/families

writes OUT/README.md and OUT/families.json with the command, the machine and the numbers. The
eval file is read where it lies, never copied.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the family builders

from family_models import FAMILY_NAMES, build_family  # noqa: E402

from slimbert.data import Columns, read_examples  # noqa: E402
from slimbert.export.onnx import ExportOptions, export  # noqa: E402
from slimbert.export.optimize import OptimizeConfig  # noqa: E402
from slimbert.export.quantize import DynamicQuantConfig  # noqa: E402
from slimbert.export.validate import Tolerances  # noqa: E402
from slimbert.files import write_json_atomic, write_text_atomic  # noqa: E402

GATE = Tolerances(1e-4, 100.0, 0.0)


def cpu_model() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    for line in lines.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def run_family(name: str, eval_path: Path, texts: list[str], scratch: Path) -> dict:
    model_dir = build_family(
        name,
        scratch / name / "model",
        texts,
        layers=4,
        hidden=64,
        heads=4,
        max_length=128,
        vocab_size=2000,
    )
    result: dict = {"family": name}
    began = time.perf_counter()
    fp32 = export(model_dir, eval_path, scratch / name / "fp32", tolerances=GATE)
    result["fp32"] = _stage(fp32)
    result["inputs"] = [i["name"] for i in fp32["inputs"]]
    fused = export(
        model_dir,
        eval_path,
        scratch / name / "optimized",
        options=ExportOptions(optimize=OptimizeConfig.cpu()),
    )
    fusions = fused["optimizations"][0]["fusions"]
    result["optimize"] = {
        **_stage(fused),
        "counts": {op: n for op, n in fusions["counts"].items() if n},
        "attention": fusions["attention"],
        "warnings": fusions["warnings"],
    }
    int8 = export(
        model_dir,
        eval_path,
        scratch / name / "int8",
        options=ExportOptions(quantize=DynamicQuantConfig()),
    )
    result["int8"] = _stage(int8)
    result["seconds"] = round(time.perf_counter() - began, 1)
    return result


def _stage(manifest: dict) -> dict:
    v = manifest["validation"]
    return {
        "examples": v["examples"],
        "max_abs_diff": v["max_abs_diff"],
        "mean_abs_diff": v["mean_abs_diff"],
        "label_agreement": v["label_agreement"],
        "passes_fp32_gate": v["max_abs_diff"] <= 1e-4 and v["label_agreement"] == 100.0,
    }


def render(results: list[dict], command: str, machine: str, eval_path: Path, rows: int) -> str:
    lines = [
        "# Export parity and attention fusion per encoder family",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine}; torch {torch.__version__}, {_versions()}",
        "",
        f"Eval file: `{eval_path}` ({rows} rows, every row validated). Models: random "
        "classifiers (4 layers, hidden 64, 4 heads), tokenizers of each family's kind trained "
        "on the eval sentences (tests/family_models.py). Gate of the plain export: max "
        "|Δlogit| ≤ 1e-4 and 100 % label agreement.",
        "",
        "| family | inputs | fp32 max \\|Δlogit\\| | fp32 agreement | gate | optimized max "
        "\\|Δlogit\\| | fused ops | int8 agreement |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        counts = ", ".join(f"{op} {n}" for op, n in r["optimize"]["counts"].items()) or "none"
        lines.append(
            f"| {r['family']} | {' '.join(r['inputs'])} | {r['fp32']['max_abs_diff']:.2e} | "
            f"{r['fp32']['label_agreement']:.2f} % | "
            f"{'pass' if r['fp32']['passes_fp32_gate'] else 'FAIL'} | "
            f"{r['optimize']['max_abs_diff']:.2e} | {counts} | "
            f"{r['int8']['label_agreement']:.2f} % |"
        )
    lines += ["", "Attention fusion, as the export reports it:", ""]
    lines += [f"- {r['family']}: {r['optimize']['attention']}" for r in results]
    warned = [(r["family"], w) for r in results for w in r["optimize"]["warnings"]]
    if warned:
        lines += ["", "Optimizer warnings:", ""]
        lines += [f"- {family}: {warning}" for family, warning in warned]
    return "\n".join(lines) + "\n"


def _versions() -> str:
    import onnxruntime
    import transformers

    return f"transformers {transformers.__version__}, onnxruntime {onnxruntime.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=Path, required=True, help="GLUE-style eval TSV")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/families"))
    parser.add_argument("--families", default=",".join(FAMILY_NAMES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    examples = read_examples(args.eval, Columns())
    texts = list(examples.texts)
    results = []
    with tempfile.TemporaryDirectory(prefix="slimbert-families-") as scratch:
        for name in args.families.split(","):
            results.append(run_family(name, args.eval, texts, Path(scratch)))
            print(json.dumps(results[-1]), flush=True)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    machine = cpu_model()
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        args.out / "families.json",
        {
            "command": command,
            "machine": machine,
            "eval": str(args.eval),
            "rows": len(examples),
            "results": results,
        },
    )
    write_text_atomic(
        args.out / "README.md", render(results, command, machine, args.eval, len(examples))
    )


if __name__ == "__main__":
    main()
