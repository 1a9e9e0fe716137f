"""ONNX export, validation against PyTorch, and the ONNX Runtime sessions that run exports.

onnx.py              the pipeline: export, then optimize / quantize / fp16, each step validated
validate.py          parity gates: Tolerances, the PyTorch-vs-ONNX comparison, Validator
manifest.py          manifest.json: graph signature, op counts, validation figures, file hashes
optimize.py          ONNX Runtime transformer fusions and the fusion report
quantize.py          dynamic / static int8 and fp16
triton.py            Triton Inference Server model repository (and its smoke test)
triton_config.py     the repository's config.pbtxt files, written from the graph's signature
triton_templates.py  the repository's Python-backend tokenizer, client and README
runtime.py           OnnxClassifier: explicit providers, the manifest's session hints
custom.py            export of the non-transformer students
"""
