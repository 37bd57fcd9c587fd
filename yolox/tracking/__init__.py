"""MLflow: the tracking store, runs, logging, the model registry and the pyfunc model.

The rest of the project reaches MLflow only through this package.
"""
