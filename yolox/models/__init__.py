"""YOLOX models: the variant table, the factory and checkpoint loading."""

from yolox.models.build import VARIANTS, Variant, build_model, get_variant
from yolox.models.checkpoint import LoadReport, load_weights
from yolox.models.yolox import YOLOX, InferenceModel

__all__ = [
           "VARIANTS",
           "YOLOX",
           "InferenceModel",
           "LoadReport",
           "Variant",
           "build_model",
           "get_variant",
           "load_weights",
]
