"""YOLOX models: the model table, the factory, checkpoint loading and the model-file metadata contract."""

from yolox.models.build import build_model
from yolox.models.checkpoint import LoadReport, load_weights
from yolox.models.table import MODELS, STRIDES, ModelSpec, model_spec
from yolox.models.yolox import YOLOX, InferenceModel

__all__ = [
    "MODELS",
    "STRIDES",
    "YOLOX",
    "InferenceModel",
    "LoadReport",
    "ModelSpec",
    "build_model",
    "load_weights",
    "model_spec",
]
