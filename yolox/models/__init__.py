"""YOLOX models: the model table (:mod:`~yolox.models.table`), the network (:mod:`~yolox.models.blocks`,
:mod:`~yolox.models.backbones`, :mod:`~yolox.models.head`, :mod:`~yolox.models.yolox`), the factory
(:mod:`~yolox.models.build`), checkpoint loading (:mod:`~yolox.models.checkpoint`) and the metadata a model file
carries (:mod:`~yolox.models.meta`). Import from the submodules: this package imports none of them, so reading the
model table (``prepare`` does) does not import the network."""
