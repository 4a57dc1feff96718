"""`segcli export`: checkpoints as self-contained ONNX graphs or TorchScript modules, verified.

- `graph`: the exported module (uint8 RGB NHWC in; labels and logits out; preprocessing inside);
- `onnx_format`, `torchscript_format`: writing and reading each format, with segcli's metadata;
- `verify`: the graph against segcli's own fp32 forward at two sizes (and batch sizes);
- `exporter`: all of it as one function (`export_model`), used by `segcli export`;
- `runtime`: `--weights FILE.onnx`: an onnxruntime session behind an `nn.Module`.

onnx and onnxruntime are optional (`pip install "segcli[export]"`).
"""
