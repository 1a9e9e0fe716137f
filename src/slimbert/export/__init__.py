"""ONNX export, validation against PyTorch, and the ONNX Runtime sessions that run exports."""
