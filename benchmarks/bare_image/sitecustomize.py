"""Makes this Python look like the lent GPU machine's bare image (PYTHONPATH=benchmarks/bare_image): the packages
that image lacks are absent, so an import of one fails and ``importlib.util.find_spec`` finds nothing, as there.
The image has Python, torch, torchvision, numpy, safetensors, h5py and OpenCV without its contrib modules."""

import sys

ABSENT = ("av", "scipy", "yaml", "tqdm", "matplotlib", "openvino", "nncf", "onnx", "onnxruntime", "onnxscript", "ray",
          "fastapi", "uvicorn", "tensorboard", "cv2.optflow")
for name in ABSENT:
    sys.modules[name] = None
