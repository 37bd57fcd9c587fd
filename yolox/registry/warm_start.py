"""Where a training run starts: ``model.weights`` resolved to a checkpoint file.

``model.weights`` is a release name (``yolox_nano.pth``), a path, null (from scratch), or a version of the
registered model (``tracking.registered_model``): ``champion``, ``@<alias>`` or ``version <N>``
(:func:`yolox.config.registry_reference`). A registry version resolves to its training checkpoint, the one its
pipeline run logged (:func:`yolox.registry.versions.training_checkpoint`), downloaded next to the run's
checkpoints: the nightly retrain fine-tunes the production model on all the data so far, instead of starting
from the authors' COCO weights every night. Its class names travel in the checkpoint, so a class list that
grew keeps the known classes' predictors (:func:`yolox.models.checkpoint.load_weights`).

With no version holding the alias yet (the first night), ``model.fallback_weights`` is used when set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from yolox.config import PipelineParams, registry_reference
from yolox.errors import ConfigError
from yolox.registry.versions import alias_version, training_checkpoint
from yolox.tracking.run import attach

log = logging.getLogger("yolox.train")


@dataclass(frozen=True)
class StartWeights:
    """The checkpoint a run starts from.

    Attributes:
        weights: what ``model.weights`` becomes for the stages (a file path, a release name, or None: scratch).
        source: for people: ``"yolox-raccoon v3 (champion)"``, ``"yolox_nano.pth"``, ``"yolox_nano.pth (fallback:
            no version holds 'champion' yet)"``, ``"scratch"``.
        version: the registered version started from, or None.
    """

    weights: str | None
    source: str
    version: str | None = None

    def tags(self) -> dict[str, str]:
        """MLflow run tags: ``warm_start`` (the source) and ``warm_start_version`` (when from the registry)."""
        return {"warm_start": self.source[:250], **({"warm_start_version": self.version} if self.version else {})}


def resolve_start_weights(params: PipelineParams, dest_dir: str | Path) -> StartWeights:
    """Resolve ``params.model.weights`` (module docstring); a registry version's checkpoint is downloaded into
    ``dest_dir``.

    Raises:
        ConfigError: an alias no version holds and no ``model.fallback_weights``.
        TrackingError: the registry cannot be read, the version does not exist, or it has no training checkpoint.
    """
    mp, name = params.model, params.tracking.registered_model
    ref = registry_reference(mp.weights)
    if ref is None:
        return StartWeights(mp.weights, mp.weights or "scratch")
    kind, value = ref
    if kind == "alias":
        holder = alias_version(name, value)
        if holder is None:
            if mp.fallback_weights is None:
                raise ConfigError(f"model.weights is {mp.weights!r} but no version of {name!r} holds {value!r} yet: "
                                  "set model.fallback_weights (e.g. yolox_nano.pth) for the first run, or "
                                  "model.weights to a checkpoint")
            log.info("warm start: no version of %s holds %r yet; starting from %s", name, value, mp.fallback_weights)
            return StartWeights(mp.fallback_weights, f"{mp.fallback_weights} (fallback: no version holds {value!r} "
                                "yet)")
        version, label = str(holder.version), f"{name} v{holder.version} ({value})"
    else:
        version, label = value, f"{name} v{value}"
    path = training_checkpoint(name, version, dest_dir)
    log.info("warm start from %s: %s", label, path)
    return StartWeights(str(path), label, version)


def warm_start(params: PipelineParams, run_id: str | None = None, out_dir: str | Path | None = None
               ) -> StartWeights:
    """Resolve ``model.weights`` (:func:`yolox.registry.warm_start.resolve_start_weights`: a registered version's
    training checkpoint, downloaded into ``<out_dir>/warm-start``, default ``train.output_dir``) and tag the run
    with where training starts.

    Raises:
        ConfigError: an alias no version holds, without ``model.fallback_weights``. TrackingError: see there.
    """
    start = resolve_start_weights(params, Path(out_dir or params.train.output_dir) / "warm-start")
    run = attach(params, run_id)
    if run is not None:
        run.set_tags(start.tags())
    return start


def with_start_weights(params: PipelineParams, start: StartWeights) -> PipelineParams:
    """``params`` with ``model.weights`` replaced by the resolved start (a file path), for the stages after."""
    return params.model_copy(update={"model": params.model.model_copy(update={"weights": start.weights})})


def start_weights(params: PipelineParams, out_dir: str | Path | None = None, run_id: str | None = None
                  ) -> PipelineParams:
    """``params`` ready for the train stage: a ``model.weights`` naming a registered version (``champion``,
    ``@alias``, ``version N``) replaced by that version's training checkpoint (:func:`warm_start`, downloaded into
    ``<out_dir>/warm-start``); other weights unchanged. What ``yolox train`` runs before training.

    Raises:
        ConfigError, TrackingError: see :func:`resolve_start_weights`.
    """
    if registry_reference(params.model.weights) is None:
        return params
    return with_start_weights(params, warm_start(params, run_id, out_dir))
