"""ONNX export, validation against PyTorch, and the ONNX Runtime sessions that run exports.

onnx.py      export + every step's parity check + manifest (the pipeline)
optimize.py  ONNX Runtime transformer fusions and the fusion report
quantize.py  dynamic / static int8 and fp16
triton.py    Triton Inference Server model repository
runtime.py   OnnxClassifier: explicit providers, the manifest's session hints
custom.py    export of the non-transformer students
"""
