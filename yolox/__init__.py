"""YOLOX object detection: prepare, train, evaluate, export and register detection models."""

__version__ = "0.1.0"
