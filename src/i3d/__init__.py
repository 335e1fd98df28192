"""I3D video action recognition: the network, its pretrained weights, and the published recipe."""

from i3d.errors import I3DError
from i3d.model import InceptionI3d
from i3d.predict import Classifier, Prediction, load_model

__all__ = ["Classifier", "I3DError", "InceptionI3d", "Prediction", "load_model"]
__version__ = "0.1.0"
