"""A registered version's description says what it is now: its first line is one plain sentence (what MLflow's
versions list shows, unrendered) naming the aliases it holds and the last move that touched it, rewritten by every
alias move for each version that gained or lost an alias; its gate record (Markdown) stays below it.

On a real SQLite registry (MLflow's own store, in tmp_path); versions are created straight through MLflow's client
(no model files: the alias moves and descriptions are what is tested)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

MODEL = "yolox-status"


@pytest.fixture()
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import mlflow

    from yolox.tracking.store import configure

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    configure()                  # this test's store for tracking and registry (MLflow keeps both process-wide)
    c = mlflow.MlflowClient()
    c.create_registered_model(MODEL)
    (tmp_path / "model").mkdir()
    return c


def _register(client, tmp_path: Path) -> str:
    """A new version taking ``challenger``, as a registration does (no description written)."""
    version = str(client.create_model_version(MODEL, str(tmp_path / "model")).version)
    client.set_registered_model_alias(MODEL, "challenger", version)
    return version


def _description(client, version: str) -> tuple[str, str]:
    """(first line, the rest after the blank line) of a version's description."""
    text = client.get_model_version(MODEL, version).description
    first, _, rest = text.partition("\n\n")
    return first, rest


def test_every_alias_move_rewrites_the_status_of_each_version_it_touches(client, tmp_path: Path) -> None:
    from yolox.registry.versions import describe_version, promote, rollback

    record = "## Gate: REJECT yolox-status version {v}\n\n| rule | threshold | value | result |\n|---|---|---|---|\n"
    v1 = _register(client, tmp_path)
    describe_version(MODEL, v1, record.format(v=v1), "Rejected by the gate at T1 (min_ap failed; no champion then).")
    assert _description(client, v1) == (
        "Challenger. Rejected by the gate at T1 (min_ap failed; no champion then).", record.format(v=v1))

    # a registration takes challenger from v1; the gate's record of v2 brings v1's line up to date
    v2 = _register(client, tmp_path)
    assert _description(client, v1)[0].startswith("Challenger.")       # nothing rewrote it yet
    describe_version(MODEL, v2, record.format(v=v2), "Passed the gate at T2.")
    first, rest = _description(client, v1)
    assert first.startswith(f"No alias. Version {v2} took challenger (recorded 20") and first.endswith("Z).")
    assert rest == record.format(v=v1)                                            # the gate record stays
    assert _description(client, v2) == ("Challenger. Passed the gate at T2.", record.format(v=v2))

    # promote: the new champion's line and the old champion's (none yet)
    event = promote(MODEL, v2, "gate")
    assert _description(client, v2) == (
        f"Champion and challenger. Promoted by the gate at {event.at} (the first champion).",
        record.format(v=v2))
    assert _description(client, v1)[0].startswith("No alias. Version 2 took challenger")   # untouched

    # a registration then a promotion by hand: v2 lost challenger, then champion
    v3 = _register(client, tmp_path)
    event = promote(MODEL, v3, "manual")
    assert _description(client, v3)[0] == (f"Champion and challenger. Promoted by hand at {event.at} over "
                                           f"version {v2}.")
    assert _description(client, v2) == (
        f"No alias. Was champion until {event.at}: version {v3} replaced it (manual).", record.format(v=v2))

    # rollback: both ends
    event = rollback(MODEL)
    assert _description(client, v2)[0] == f"Champion. Back since {event.at}: rolled back from version {v3}."
    assert _description(client, v3)[0] == (f"Challenger. Was champion until {event.at}: rolled back to "
                                           f"version {v2}.")
    assert _description(client, v3)[1] == ""                                    # v3 never had a gate record

    # every first line is one plain sentence, what the version is first (the versions list shows ~30 characters)
    for v in (v1, v2, v3):
        first = _description(client, v)[0]
        assert re.match(r"(Champion|Challenger|No alias)\b", first) and first.endswith("."), first
        assert not set("#*>|`\n") & set(first), first                             # no Markdown to show raw


def test_a_move_made_elsewhere_is_found_at_the_next_write(client, tmp_path: Path) -> None:
    """An alias moved by hand (the UI) between two writes: both versions' lines are rewritten at the next one; a
    description in the earlier form (``> **Status:** ...``) loses that line, a person's own description stays below
    the status line (once, however often it is rewritten), and a deleted version is passed over."""
    from yolox.registry.versions import promote, sync_status

    v1, v2, v3 = (str(client.create_model_version(MODEL, str(tmp_path / "model")).version) for _ in range(3))
    promote(MODEL, v1, "manual")
    client.update_model_version(MODEL, v1, description="> **Status:** an earlier form\n\n## Gate: PROMOTE\n")
    client.update_model_version(MODEL, v2, description="Baseline. Registered by hand.")   # a person's words
    client.set_registered_model_alias(MODEL, "champion", v2)                      # by hand, outside yolox
    client.set_registered_model_alias(MODEL, "staging", v3)
    client.delete_model_version(MODEL, v3)                                        # gone before the next write
    assert sync_status(client, MODEL, {}, at="T9") == [v1, v2]
    assert _description(client, v1) == (f"No alias. Version {v2} took champion (recorded T9).",
                                        "## Gate: PROMOTE\n")
    assert _description(client, v2) == (f"Champion. Took champion from version {v1} (recorded T9).",
                                        "Baseline. Registered by hand.")                 # kept, below
    assert sync_status(client, MODEL, {}, at="T10") == []                         # nothing moved since
    client.set_registered_model_alias(MODEL, "champion", v1)                      # by hand again
    assert sync_status(client, MODEL, {}, at="T11") == [v1, v2]
    assert client.get_model_version(MODEL, v2).description == (
        f"No alias. Version {v1} took champion (recorded T11).\n\nBaseline. Registered by hand.")   # once


def test_the_gate_says_in_one_past_tense_sentence_what_it_did() -> None:
    """The note the gate's record puts in the candidate's status line, for each outcome: it names the rules that
    failed and the champion compared with, and says nothing in the present tense that a later move would falsify
    (the decision's own outcome, ``version 2 stays challenger``, is kept in the record below, dated)."""
    from yolox.config import GateParams
    from yolox.registry.rules import ModelEval, decide

    def ev(version: str, ap: float) -> ModelEval:
        return ModelEval(version, {"AP50_95": ap, "AP50": ap + 0.2}, "sha256:aaaa", "d.dir", 26)

    gp = GateParams(min_ap=0.05, max_regression=0.01)
    rejected = decide("m", ev("2", 0.28), ev("1", 0.30), True, gp)
    rejected.decided_at, rejected.outcome = "2026-12-07T06:12:00Z", "not promoted: version 2 stays challenger"
    assert rejected.status_note() == ("Rejected by the gate at 2026-12-07T06:12:00Z (max_regression "
                                      "failed; champion was version 1).")
    assert "Outcome at 2026-12-07T06:12:00Z: **not promoted: version 2 stays challenger**." in rejected.markdown()
    first = decide("m", ev("1", 0.30), None, True, gp)
    first.decided_at, first.outcome = "T", "promoted: version 1 is champion (previous: none)"
    assert first.status_note() == "Promoted by the gate at T (the first champion)."
    beaten = decide("m", ev("3", 0.40), ev("2", 0.30), True, gp)
    beaten.decided_at, beaten.outcome = "T", "promoted: version 3 is champion (previous: 2)"
    assert beaten.status_note() == "Promoted by the gate at T over version 2."
    beaten.outcome = "not promoted: m: 'champion' moved to version 4 while the gate compared against 2: re-run the gate"
    assert beaten.status_note() == ("Passed the gate at T but was not promoted: m: 'champion' moved to version 4 "
                                    "while the gate compared against 2: re-run the gate.")
    floor = decide("m", ev("1", 0.01), None, True, gp)
    floor.decided_at = "T"
    assert floor.status_note() == "Rejected by the gate at T (min_ap failed; no champion then)."
