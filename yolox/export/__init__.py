"""Export: ONNX (checked against PyTorch with ONNX Runtime) and TensorRT engines on CUDA machines."""
