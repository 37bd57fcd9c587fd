"""Serving: the MLflow pyfunc the registry serves, and ``yolox predict`` on files, folders, URLs and videos."""
