"""Training: image/mask pairs and the uint8 cache (``data``), the trainer (``trainer``), validation-split
calibration (``calibrate``) and the SOD benchmark metrics of an ONNX model (``evaluate``). Torch is imported only
by the functions that train."""
