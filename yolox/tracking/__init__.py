"""MLflow plumbing: the tracking store and its bounded requests (:mod:`~yolox.tracking.store`), runs
(:mod:`~yolox.tracking.run`) and the journal that keeps epoch metrics when the server is away
(:mod:`~yolox.tracking.journal`). The registry and the gate live in :mod:`yolox.registry`, serving in
:mod:`yolox.serve`.
"""
