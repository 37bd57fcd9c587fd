"""The promotion gate's rules: may a candidate model take the champion alias? Pure functions of figures
measured elsewhere (no I/O, no MLflow): the gate run (:mod:`yolox.registry.gate`) measures, these decide.

The decision itself is one pure function, :func:`decide`, of the evaluations made in the same gate run on
the same prepared val set (the candidate's, the champion's, and, with no champion yet, the base weights'
the candidate started from), the best AP any champion ever reached on that val set (recorded in the
registry), the export check and the gate params. Its rules (each recorded with its threshold, value and
pass/fail):

``min_ap``          candidate AP50:95 >= ``gate.min_ap`` (an absolute floor; also for the first model).
``max_regression``  candidate AP50:95 >= champion AP50:95 - ``gate.max_regression`` (passes when there is
                    no champion yet).
``best_ever``       (``gate.best_ever``) candidate AP50:95 >= the best AP50:95 any champion reached on this
                    val set - ``gate.max_regression``: nightly runs that each lose a little within the
                    tolerance cannot add up to more than the tolerance.
``base_weights``    (``gate.base_check``, only with no champion) candidate AP50:95 >= the AP50:95 of the
                    weights it was trained from (``model.weights``), evaluated in this run on this val set,
                    - ``gate.max_regression``: a first model must not be worse than what it started from.
                    Passes, saying why, when the base predicts other classes (a fine-tune to new classes).
``per_class``       (``gate.per_class_min_boxes`` set) no class with at least that many val boxes loses more
                    than ``gate.per_class_max_drop`` AP50:95 against the champion (else the base weights).
``int8_max_drop``   (when the candidate's export made an INT8 model, ``export.int8``) its AP50:95 is at most
                    ``gate.int8_max_drop`` below the FP32 model's, both with ONNX Runtime on the gate's val set
                    (the export stage's figures, tags ``int8_AP50_95``, ``int8_fp32_AP50_95``, when their
                    ``int8_val_set`` is the gate's; else re-measured in the gate run).
``tensorrt_int8_max_drop`` (when the candidate's TensorRT engine is INT8, ``export.tensorrt_precision``) the
                    same rule for the engine against its ONNX model (tags ``tensorrt_AP50_95``,
                    ``tensorrt_onnx_AP50_95``, ``tensorrt_val_set``; re-measured on another val set, which needs
                    the GPU and TensorRT the engine was built for: else the rule fails saying so).
``openvino_int8_max_drop`` (when the candidate's export made an OpenVINO INT8 IR: ``export.formats`` lists
                    ``openvino`` and ``export.int8``) the same rule for the INT8 IR against its FP32 IR, both with
                    OpenVINO (tags ``openvino_int8_AP50_95``, ``openvino_fp32_AP50_95``, ``openvino_val_set``;
                    re-measured in the gate run on another val set, from the IRs the version's run logged).
``max_p90_ms``      (``gate.max_p90_ms`` set) the candidate's p90 latency per image at batch 1 (its registered
                    ONNX model with ONNX Runtime, letterbox to detections, on this machine, measured in the
                    gate run: :func:`yolox.export.benchmark.latency_ms`) is at most that many milliseconds.
``golden``          (``gate.golden`` set) candidate AP50:95 on the fixed regression set >= the champion's on it
                    - ``gate.golden_max_regression`` (0 by default: the production model never gets worse on
                    the same images, night after night, while the val split grows with the data). Both are
                    evaluated in the gate run; passes when there is no champion yet.
``export_check``    the candidate's ONNX matched PyTorch (always passes when
                    ``gate.require_export_check`` is false, but the value is still recorded).
``same_val_set``    the candidate and the champion were evaluated on the same val set: equal
                    fingerprints of the val split that was read (annotations and image bytes); never a
                    number measured on other data (passes when there is no champion).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from yolox.config import GateParams

METRIC = "AP50_95"


@dataclass
class ModelEval:
    """A model version evaluated by the gate.

    Attributes:
        version: registered version (string, as MLflow), or None for an unregistered model.
        metrics: the six COCO APs (fractions), as :class:`yolox.evaluate.coco_eval.EvalResult`.
        val_set: fingerprint of the val split that was evaluated (:func:`val_set_id`).
        data_version: the DVC hash of the prepared dataset when the caller knows it (informational).
        num_images: images evaluated.
        per_class: AP50:95 per class name; class_boxes: val boxes per class name (the per-class rule).
    """

    version: str | None
    metrics: dict[str, float]
    val_set: str
    data_version: str | None = None
    num_images: int = 0
    per_class: dict[str, float] = field(default_factory=dict)
    class_boxes: dict[str, int] = field(default_factory=dict)

    @property
    def ap(self) -> float:
        return float(self.metrics[METRIC])

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "metrics": {k: round(float(v), 6) for k, v in self.metrics.items()},
                "per_class": {k: round(float(v), 6) for k, v in self.per_class.items()}}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ModelEval:
        optional = ("data_version", "num_images", "per_class", "class_boxes")
        return cls(raw.get("version"), raw["metrics"], raw["val_set"],
                   **{k: raw[k] for k in optional if raw.get(k) is not None})


@dataclass
class Rule:
    """One gate rule: ``passed`` is the verdict on ``value`` against ``threshold``."""

    name: str
    threshold: float | str | None
    value: float | str | None
    passed: bool
    detail: str = ""


@dataclass
class Decision:
    """The gate's decision record (``gate/decision.json``).

    ``decision`` is ``promote`` or ``reject``; ``outcome`` says what was done with it (filled by
    :func:`apply_decision`: promoted, not promoted, dry run, or refused because the champion moved).
    """

    model: str
    candidate: ModelEval
    champion: ModelEval | None
    rules: list[Rule]
    gate: dict[str, Any]
    decision: str = "reject"
    outcome: str = "not applied"
    decided_at: str = ""
    mlflow_run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    base: ModelEval | None = None
    best: dict[str, Any] | None = None
    golden_candidate: ModelEval | None = None
    golden_champion: ModelEval | None = None

    @property
    def promote(self) -> bool:
        """The gate's verdict: the candidate may become champion."""
        return self.decision == "promote"

    @property
    def promoted(self) -> bool:
        """What happened: the alias was moved to the candidate by this decision (False for a rejection, a dry
        run, or a promotion refused because the champion moved meanwhile)."""
        return self.promote and self.outcome.startswith("promoted")

    @property
    def failed(self) -> list[Rule]:
        return [r for r in self.rules if not r.passed]

    def reason(self) -> str:
        """One line: the decision and, when rejected, each failed rule with its value and threshold."""
        who = f"{self.model} version {self.candidate.version}"
        if self.promote:
            base = f"champion version {self.champion.version}" if self.champion else "no champion yet"
            return f"{who} passes the gate ({METRIC} {self.candidate.ap:.4f}; {base})"
        return f"{who} rejected: " + "; ".join(f"{r.name}: {r.detail}" for r in self.failed)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "decision": self.decision, "promoted": self.promoted, "outcome": self.outcome,
                "reason": self.reason(), "decided_at": self.decided_at, "mlflow_run_id": self.mlflow_run_id,
                "candidate": self.candidate.to_json(),
                "champion": self.champion.to_json() if self.champion else None,
                "base": self.base.to_json() if self.base else None, "best_ever": self.best,
                **({"golden": {"candidate": self.golden_candidate.to_json(),
                               "champion": self.golden_champion.to_json() if self.golden_champion else None}}
                   if self.golden_candidate else {}),
                "rules": [{k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(r).items()}
                          for r in self.rules], "gate": self.gate, **self.extra}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Decision:
        known = {"model", "decision", "promoted", "outcome", "reason", "decided_at", "mlflow_run_id", "candidate",
                 "champion", "base", "best_ever", "rules", "gate", "golden"}
        golden = raw.get("golden") or {}
        return cls(raw["model"], ModelEval.from_json(raw["candidate"]),
                   ModelEval.from_json(raw["champion"]) if raw.get("champion") else None,
                   [Rule(**r) for r in raw["rules"]], raw["gate"], raw["decision"], raw.get("outcome", ""),
                   raw.get("decided_at", ""), raw.get("mlflow_run_id"),
                   {k: v for k, v in raw.items() if k not in known},
                   ModelEval.from_json(raw["base"]) if raw.get("base") else None, raw.get("best_ever"),
                   ModelEval.from_json(golden["candidate"]) if golden.get("candidate") else None,
                   ModelEval.from_json(golden["champion"]) if golden.get("champion") else None)

    def tags(self) -> dict[str, str]:
        """Model-version tags: ``gate.decision``, ``gate.rule.<name>`` = pass/fail, APs and the champion."""
        tags = {"gate.decision": self.decision, f"gate.{METRIC}": f"{self.candidate.ap:.4f}",
                "gate.champion_version": str(self.champion.version) if self.champion else "none",
                "gate.val_set": self.candidate.val_set, "gate.decided_at": self.decided_at}
        if self.champion:
            tags[f"gate.champion_{METRIC}"] = f"{self.champion.ap:.4f}"
        if self.golden_candidate:
            tags[f"gate.golden_{METRIC}"] = f"{self.golden_candidate.ap:.4f}"
        if self.golden_champion:
            tags[f"gate.golden_champion_{METRIC}"] = f"{self.golden_champion.ap:.4f}"
        tags.update({f"gate.rule.{r.name}": "pass" if r.passed else "fail" for r in self.rules})
        return tags

    def metrics(self) -> dict[str, float]:
        """MLflow run metrics: ``gate/<who>_AP50_95`` for the val split and the golden set (who: candidate,
        champion, base), what the runs table compares night after night."""
        out = {f"gate/candidate_{METRIC}": self.candidate.ap}
        for who, ev in (("champion", self.champion), ("base", self.base), ("golden_candidate", self.golden_candidate),
                        ("golden_champion", self.golden_champion)):
            if ev is not None:
                out[f"gate/{who}_{METRIC}"] = ev.ap
        return out

    def status_note(self) -> str:
        """One plain sentence on what the gate did with the candidate, for the status line of its description
        (:func:`yolox.registry.versions.status_line`), in the past tense: it stays true after later moves."""
        at = self.decided_at or "an unknown time"
        champ = self.champion.version if self.champion else None
        if self.promoted:
            return f"Promoted by the gate at {at} " + (f"over version {champ}." if champ else "(the first champion).")
        if self.promote:
            return f"Passed the gate at {at} but was not promoted: {self.outcome.removeprefix('not promoted: ')}."
        failed = ", ".join(r.name for r in self.failed)
        return f"Rejected by the gate at {at} ({failed} failed" + (f"; champion was version {champ})." if champ
                                                                     else "; no champion then).")

    def markdown(self) -> str:
        """The record as Markdown (Prefect artifact, model-version description, run note)."""
        def fmt(v: Any) -> str:
            return f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v))

        cand, champ = self.candidate, self.champion
        lines = [f"## Gate: {self.decision.upper()} {self.model} version {cand.version}", "",
                 f"{self.reason()}.", "", f"Outcome at {self.decided_at or 'decision time'}: **{self.outcome}**.", "",
                 "| rule | threshold | value | result |", "|---|---|---|---|"]
        lines += [f"| {r.name} | {fmt(r.threshold)} | {fmt(r.value)} | {'pass' if r.passed else '**FAIL**'} |"
                  for r in self.rules]
        lines += ["", "| metric | candidate v" + str(cand.version) + " | champion " +
                  (f"v{champ.version}" if champ else "(none)") + " |", "|---|---|---|"]
        for k, v in cand.metrics.items():
            lines.append(f"| {k} | {v:.4f} | {fmt(champ.metrics.get(k)) if champ else '-'} |")
        if self.golden_candidate is not None:
            gc, gh = self.golden_candidate, self.golden_champion
            lines += ["", f"Golden set `{gc.val_set}` ({gc.num_images} images, the same every night): {METRIC} "
                      f"candidate {gc.ap:.4f}, champion " + (f"{gh.ap:.4f}" if gh else "(none)") + "."]
        if self.base is not None:
            lines += ["", f"Base weights (the start of training): {METRIC} {self.base.ap:.4f} on the same val set."]
        if self.best:
            lines += ["", (f"Best {METRIC} of any champion on this val set: {self.best['ap']:.4f} "
                           f"(version {self.best['version']}).")]
        lines += ["", (f"Val set `{cand.val_set}` ({cand.num_images} images), data version "
                       f"`{cand.data_version or 'unknown'}`; decided {self.decided_at}.")]
        return "\n".join(lines) + "\n"


def decide(model: str, candidate: ModelEval, champion: ModelEval | None, export_check: bool | None,
           params: GateParams, champion_error: str | None = None, base: ModelEval | None = None,
           best: dict[str, Any] | None = None, base_note: str | None = None,
           int8: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
           p90_ms: float | None = None, golden: tuple[ModelEval, ModelEval | None, str | None] | None = None
           ) -> Decision:
    """Apply the gate rules (see the module docstring). Pure: no I/O, no clock.

    Args:
        model: registered model name. candidate, champion: evaluations made in this gate run (champion
            None when no version holds the champion alias). export_check: the candidate's ONNX check
            (None when unknown, which fails when required). champion_error: why a champion that exists
            could not be evaluated on this val set (e.g. other classes); then no comparison is possible
            and ``max_regression`` and ``same_val_set`` fail (promote by hand if that is intended).
        base: the base weights (``model.weights``) evaluated on this val set, or None when they could not be
            (``base_note`` says why: other classes, trained from scratch). best: ``{"ap", "version"}``, the best
            AP50:95 a champion reached on this val set (the champion evaluated now included), or None.
        int8: the candidate's INT8 figures, each ``{"fp32_ap", "int8_ap"}`` plus ``"runtime"`` (``onnxruntime``,
            the default, ``tensorrt`` or ``openvino``), ``"val_set"`` and ``"error"`` (why it could not be measured on this val
            set: the rule fails); one mapping is one figure; None or empty: no INT8 model, no rule.
        p90_ms: the candidate's measured p90 latency (ms; the ``max_p90_ms`` rule, when ``gate.max_p90_ms`` is set).
        golden: ``(candidate, champion, why the champion could not be evaluated)`` on the golden set
            (``gate.golden``); None: no golden rule.
    """
    ap, tol = candidate.ap, params.max_regression
    rules = [Rule("min_ap", params.min_ap, ap, ap >= params.min_ap,
                  f"{METRIC} {ap:.4f} {'>=' if ap >= params.min_ap else '<'} floor {params.min_ap:.4f}")]
    if champion is None and champion_error:
        why = f"the champion could not be evaluated on this val set: {champion_error}"
        rules.append(Rule("max_regression", None, ap, False, why))
    elif champion is None:
        rules.append(Rule("max_regression", None, ap, True, "no champion yet: first model"))
    else:
        rules.append(_not_below("max_regression", ap, champion.ap, tol, f"champion v{champion.version}"))
    if params.best_ever:
        if best is None:
            rules.append(Rule("best_ever", None, ap, True, "no champion was evaluated on this val set before"))
        else:
            rules.append(_not_below("best_ever", ap, float(best["ap"]), tol,
                                    f"best champion on this val set (v{best['version']})"))
    if params.base_check and champion is None and not champion_error:
        if base is None:
            rules.append(Rule("base_weights", None, ap, True, base_note or "no base weights to compare with"))
        else:
            rules.append(_not_below("base_weights", ap, base.ap, tol, "the base weights it was trained from"))
    if params.per_class_min_boxes is not None:
        rules.append(_per_class_rule(candidate, champion if champion is not None else base, params))
    for figure in ([int8] if isinstance(int8, Mapping) else list(int8 or [])):
        rules.append(int8_rule(figure, params.int8_max_drop))
    if params.max_p90_ms is not None:
        rules.append(latency_rule(p90_ms, params.max_p90_ms))
    if golden is not None:
        rules.append(golden_rule(*golden, params.golden_max_regression, champion is not None or bool(champion_error)))
    state = {True: "passed", False: "failed", None: "unknown"}[export_check]
    rules.append(Rule("export_check", "passed" if params.require_export_check else "not required", state,
                      bool(export_check) or not params.require_export_check, f"ONNX check {state}"))
    if champion is None and champion_error:
        rules.append(Rule("same_val_set", None, candidate.val_set, False, "no champion evaluation on this val set"))
    elif champion is None:
        rules.append(Rule("same_val_set", None, candidate.val_set, True, "no champion to compare with"))
    else:
        same = candidate.val_set == champion.val_set
        rules.append(Rule("same_val_set", champion.val_set, candidate.val_set, same,
                          "candidate and champion evaluated on the same val set" if same else
                          f"candidate evaluated on {candidate.val_set}, champion on {champion.val_set}: "
                          "evaluate both on the same prepared val set"))
    decision = "promote" if all(r.passed for r in rules) else "reject"
    extra: dict[str, Any] = {"champion_error": champion_error} if champion_error else {}
    if base_note and base is None:
        extra["base_note"] = base_note
    return Decision(model, candidate, champion, rules, params.model_dump(mode="json"), decision, extra=extra,
                    base=base, best=best, golden_candidate=golden[0] if golden else None,
                    golden_champion=golden[1] if golden else None)


def golden_rule(candidate: ModelEval, champion: ModelEval | None, error: str | None, tol: float,
                has_champion: bool) -> Rule:
    """The ``golden`` rule: the candidate's AP50:95 on the fixed regression set at least the champion's - ``tol``
    (passes with no champion; fails when a champion exists but could not be evaluated on it: ``error``)."""
    if champion is None:
        if has_champion:
            return Rule("golden", None, candidate.ap, False, f"the champion could not be evaluated on the golden set: "
                        f"{error or 'unknown'}")
        return Rule("golden", None, candidate.ap, True, f"no champion yet (golden {METRIC} {candidate.ap:.4f})")
    return _not_below("golden", candidate.ap, champion.ap, tol, f"champion v{champion.version} on the golden set")


INT8_RULES = {"onnxruntime": ("int8_max_drop", "INT8"), "tensorrt": ("tensorrt_int8_max_drop", "TensorRT INT8"),
              "openvino": ("openvino_int8_max_drop", "OpenVINO INT8")}
"""The INT8 rule of each runtime: its name in the decision, and how its model is named in the reason."""


def int8_rule(figure: Mapping[str, Any], max_drop: float) -> Rule:
    """The INT8 rule of one runtime (:data:`INT8_RULES`): the INT8 model's AP50:95 at most ``max_drop`` below the
    FP32 model's (``figure``: see :func:`decide`); fails, saying why, when the figure could not be measured on
    the gate's val set."""
    name, what = INT8_RULES[str(figure.get("runtime", "onnxruntime"))]
    if figure.get("error"):
        return Rule(name, max_drop, None, False, f"{what} not measured on this val set: {figure['error']}")
    fp32_ap, int8_ap = float(figure["fp32_ap"]), float(figure["int8_ap"])
    drop = fp32_ap - int8_ap
    ok = drop <= max_drop + 1e-12
    measured = f" (re-measured on {figure['val_set']})" if figure.get("remeasured") else ""
    return Rule(name, max_drop, round(drop, 6), ok, f"{what} {METRIC} {int8_ap:.4f} vs FP32 {fp32_ap:.4f}: "
                f"drop {drop:.4f} {'<=' if ok else '>'} {max_drop}{measured}")


def latency_rule(p90_ms: float | None, max_p90_ms: float) -> Rule:
    """The ``max_p90_ms`` rule: the measured p90 latency (ms) at most ``max_p90_ms`` (fails when not measured)."""
    if p90_ms is None:
        return Rule("max_p90_ms", max_p90_ms, None, False, "p90 latency was not measured")
    ok = p90_ms <= max_p90_ms
    return Rule("max_p90_ms", max_p90_ms, round(p90_ms, 3), ok, f"p90 latency {p90_ms:.1f} ms "
                f"{'<=' if ok else '>'} {max_p90_ms} ms (batch 1, ONNX Runtime, this machine)")


def _not_below(name: str, ap: float, reference: float, tol: float, what: str) -> Rule:
    floor = reference - tol
    ok = ap >= floor - 1e-12
    return Rule(name, round(floor, 6), ap, ok, f"{METRIC} {ap:.4f} {'>=' if ok else '<'} {floor:.4f} = {what} "
                f"{reference:.4f} - {tol}")


def _per_class_rule(candidate: ModelEval, reference: ModelEval | None, params: GateParams) -> Rule:
    """No class with >= ``per_class_min_boxes`` val boxes loses more than ``per_class_max_drop`` AP50:95."""
    n, drop = params.per_class_min_boxes, params.per_class_max_drop
    if reference is None or not reference.per_class:
        return Rule("per_class", drop, None, True, "no champion or base weights to compare classes with")
    counted = sorted(c for c, k in candidate.class_boxes.items() if k >= (n or 0) and c in reference.per_class)
    losses = {c: reference.per_class[c] - candidate.per_class.get(c, 0.0) for c in counted}
    worst = max(losses, key=losses.get) if losses else None
    bad = sorted(c for c, d in losses.items() if d > drop + 1e-12)
    value = round(losses[worst], 6) if worst else 0.0
    if bad:
        detail = "; ".join(f"{c} {reference.per_class[c]:.4f} -> {candidate.per_class.get(c, 0.0):.4f}" for c in bad)
        return Rule("per_class", drop, value, False, f"{len(bad)} of {len(counted)} classes with >= {n} val boxes "
                    f"lost more than {drop} {METRIC}: {detail}")
    return Rule("per_class", drop, value, True, f"{len(counted)} classes with >= {n} val boxes; largest loss "
                f"{value:.4f}" + (f" ({worst})" if worst else ""))
