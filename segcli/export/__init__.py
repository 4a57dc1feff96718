"""`segcli export`: checkpoints as self-contained ONNX graphs or TorchScript modules, verified.

- `graph`: the exported module (uint8 RGB NHWC in; labels and logits out; preprocessing inside);
- `onnx_format`, `torchscript_format`: writing and reading each format, with segcli's metadata;
- `verify`: the graph against segcli's own fp32 forward at two sizes (and batch sizes);
- `exporter`: all of it as one function (`export_model`), used by `segcli export`.

Running an exported ONNX graph (`--weights FILE.onnx`) is a checkpoint format: segcli/checkpoints/onnx_model.py.

onnx and onnxruntime are optional (`pip install "segcli[export]"`).
"""
