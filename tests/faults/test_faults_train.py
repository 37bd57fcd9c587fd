"""Bad inputs and interruptions of training (issue 11, the training part), as a user meets them: through
``yolox train`` (in this process: ``yolox.cli.run`` with its argv, its exit status and its stderr).

Each case asserts the exact message and exit status, and that nothing the user had is lost: the checkpoint
already in the output folder (``last.pth``, ``run.json``) is byte for byte what it was, and no temp file is
left. The interruption cases (SIGINT, SIGTERM: real signals, sent to this process from inside a training
step) also resume the run with ``yolox train --resume`` and get the weights of an uninterrupted run.

Tiny runs: yolox-nano at 128 px, batch 4, 2 epochs of 2 iterations on a 16-image coco128 subset
(12 train / 4 val), one torch thread (tests/helpers/train.py).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from helpers.cli_runner import yolox_stderr
from helpers.train import assert_same_weights, checkpoint, signal_at_step, tiny_params

from yolox.errors import DiskFullError
from yolox.train import checkpoint as checkpoint_module
from yolox.train import trainer

EPOCHS, ITERS = 2, 2
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _sigint_as_in_a_terminal() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt during each test, as in a terminal's foreground job, whatever this test run
    inherited (started in the background of a non-interactive shell, ``cmd &``, SIGINT comes ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# ------------------------------------------------------------------------------------ helpers


def error_text(stderr: str) -> str:
    """The error the CLI printed: its ``error:`` line (and the lines after it: a params file's bad fields)."""
    lines = stderr.splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(at) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return "\n".join(lines[at[0]:]).removeprefix("error: ")


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file in ``folder`` (temp files included: none may be left)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``path`` (root only: skips the test where mounting is refused)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="module")
def params_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("params") / "tiny.yaml"
    params = tiny_params(epochs=EPOCHS, max_iters_per_epoch=ITERS, no_aug_epochs=1)
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    return path


@pytest.fixture(scope="module")
def trained(prepared_subset: Path, params_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of the tiny params: its output folder (last.pth of epoch 2, run.json)."""
    from yolox.config import load_params

    out = tmp_path_factory.mktemp("trained")
    trainer.train(load_params(params_file), prepared_subset, out, progress=False, run_id="run-1")
    return out


@pytest.fixture
def out(trained: Path, tmp_path: Path) -> Path:
    """A user's output folder holding a finished run (a copy of ``trained``)."""
    folder = tmp_path / "out"
    shutil.copytree(trained, folder)
    return folder


# ------------------------------------------------------------------------------------ the bad-input matrix


@dataclass
class Where:
    """The files of one case: its temp folder, the prepared dataset, the user's output folder (holding a
    finished run), the asset mirror, the params file."""

    tmp: Path
    prepared: Path
    out: Path
    assets: Path
    params: Path


@dataclass
class Case:
    """``yolox train --params P --prepared D --out O`` plus ``args`` and what ``setup(where)`` returns (later
    options win) -> exit 1 and the one-line error ``message(where)`` (a regular expression when ``regex``).
    ``out(where)``: the --out folder given (default the one holding the finished run)."""

    args: list[str] = field(default_factory=list)
    setup: Callable[[Where], list[str]] = lambda w: []
    message: Callable[[Where], str] = lambda w: ""
    regex: bool = False
    out: Callable[[Where], Path] = lambda w: w.out


def _prepared_copy(w: Where, train_json: dict[str, Any] | None) -> Path:
    """A copy of the prepared folder (images linked) whose annotations/train.json is ``train_json``
    (absent when None)."""
    import json

    copy = w.tmp / "prepared_copy"
    (copy / "annotations").mkdir(parents=True)
    (copy / "images").symlink_to(w.prepared / "images")
    shutil.copy(w.prepared / "annotations" / "val.json", copy / "annotations" / "val.json")
    if train_json is not None:
        (copy / "annotations" / "train.json").write_text(json.dumps(train_json))
    return copy


def _empty_train_split(w: Where) -> list[str]:
    import json

    train = json.loads((w.prepared / "annotations" / "train.json").read_text())
    return ["--prepared", str(_prepared_copy(w, {**train, "images": [], "annotations": []}))]


def _corrupt_weights(w: Where) -> list[str]:
    (w.tmp / "corrupt.pth").write_bytes(b"PK\x03\x04 not really a zip archive" * 10)
    return ["--set", f"model.weights={w.tmp / 'corrupt.pth'}"]


def _other_classes(w: Where) -> list[str]:
    state = checkpoint(w.out / "last.pth")
    state["names"] = [f"part-{i}" for i in range(len(state["names"]))]
    torch.save(state, w.out / "last.pth")
    return []


def _truncated_checkpoint(w: Where) -> list[str]:
    data = (w.out / "last.pth").read_bytes()
    (w.out / "last.pth").write_bytes(data[: len(data) // 3])
    return []


def _known_weights() -> str:
    from yolox.assets import WEIGHTS

    return ", ".join(sorted(WEIGHTS))


def _not_prepared(folder: Path) -> str:
    return f"{folder / 'annotations' / 'train.json'} not found: is {folder} a prepared dataset? Run `yolox prepare` first."


CASES: dict[str, Case] = {
    "prepared-missing": Case(
        setup=lambda w: ["--prepared", str(w.tmp / "nope")],
        message=lambda w: _not_prepared(w.tmp / "nope")),
    "prepared-empty": Case(
        setup=lambda w: (w.tmp / "empty").mkdir() or ["--prepared", str(w.tmp / "empty")],
        message=lambda w: _not_prepared(w.tmp / "empty")),
    "no-train-split": Case(
        setup=lambda w: ["--prepared", str(_prepared_copy(w, None))],
        message=lambda w: _not_prepared(w.tmp / "prepared_copy")),
    "zero-train-images": Case(
        setup=_empty_train_split,
        message=lambda w: "the training dataset has no images: check the prepared train split"),
    "weights-missing": Case(
        setup=lambda w: ["--set", f"model.weights={w.tmp / 'nope.pth'}"],
        message=lambda w: f"weights '{w.tmp / 'nope.pth'}': no such file, and not a released checkpoint name "
                          f"(known: {_known_weights()})"),
    "weights-corrupt": Case(
        setup=_corrupt_weights,
        message=lambda w: re.escape(f"{w.tmp / 'corrupt.pth'}: not a valid checkpoint: the file is cut short or "
                                    "corrupt (") + r".+\); copy or download it again", regex=True),
    "weights-other-model": Case(
        args=["--set", "model.name=yolox-s"],
        setup=lambda w: ["--set", f"model.weights={w.assets / 'weights' / 'yolox_nano.pth'}"],
        message=lambda w: re.escape(f"{w.assets / 'weights' / 'yolox_nano.pth'} does not fit this model: shape "
                                    "mismatch: backbone.backbone.stem.conv.conv.weight (16, 12, 3, 3) vs model "
                                    "(32, 12, 3, 3), ") + ".+" + re.escape(". Is it a checkpoint of another model size?"),
        regex=True),
    "batch-not-divisible": Case(
        args=["--set", "train.batch_size=3", "--set", "train.distributed.launcher=torchrun",
              "--set", "train.distributed.nproc_per_node=2"],
        message=lambda w: "train.batch_size=3 must be divisible by the 2 processes"),
    "batch-larger-than-dataset": Case(
        args=["--set", "train.batch_size=16"],
        message=lambda w: f"train.batch_size=16 is larger than the 14 training images of {w.prepared}: lower "
                          "train.batch_size (the lr is scaled by it)"),
    "epochs-zero": Case(
        args=["--set", "train.epochs=0", "--set", "train.no_aug_epochs=0"],
        message=lambda w: f"{w.params}: invalid params\n  train.epochs: Input should be greater than or equal to 1 "
                          "(got 0)"),
    "negative-lr": Case(
        args=["--set", "train.basic_lr_per_img=-0.01"],
        message=lambda w: f"{w.params}: invalid params\n  train.basic_lr_per_img: Input should be greater than 0 "
                          "(got -0.01)"),
    "freeze-matches-nothing": Case(
        args=["--set", "train.freeze=[backbone.nope]"],
        message=lambda w: "train.freeze: 'backbone.nope' matches no parameter of the model"),
    "device-cuda-on-cpu": Case(
        args=["--set", "train.device=cuda"],
        message=lambda w: "train.device='cuda' but no CUDA GPU is available here (use 'auto' or 'cpu')"),
    "output-is-a-file": Case(
        setup=lambda w: (w.tmp / "notes.txt").write_text("mine") and [],
        out=lambda w: w.tmp / "notes.txt",
        message=lambda w: f"train.output_dir (--out) {w.tmp / 'notes.txt'} is a file, not a folder: choose "
                          "another path"),
    "resume-other-model": Case(
        args=["--resume", "--set", "model.name=yolox-s"],
        message=lambda w: f"{w.out / 'last.pth'} is a yolox-nano checkpoint, but model.name is yolox-s: use "
                          "another train.output_dir or the same model"),
    "resume-other-classes": Case(
        args=["--resume", "--set", f"train.epochs={EPOCHS + 1}"],
        setup=_other_classes,
        message=lambda w: f"{w.out / 'last.pth'} was trained on other classes than this prepared dataset: resume "
                          "with the dataset it was trained on"),
    "resume-corrupt-checkpoint": Case(
        args=["--resume"],
        setup=_truncated_checkpoint,
        message=lambda w: re.escape(f"{w.out / 'last.pth'}: not a valid checkpoint: the file is cut short or "
                                    "corrupt (") + r".+\); copy or download it again", regex=True),
    "resume-fewer-epochs": Case(
        args=["--resume", "--set", "train.epochs=1"],
        message=lambda w: f"{w.out / 'last.pth'} already has {EPOCHS} epochs, more than train.epochs=1: raise "
                          "train.epochs to continue it"),
}


@pytest.mark.parametrize("kind", list(CASES), ids=[f"train-{k}" for k in CASES])
def test_bad_input(kind: str, prepared_subset: Path, params_file: Path, out: Path, assets_dir: Path,
                   tmp_path: Path,
                   capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    if kind == "device-cuda-on-cpu" and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    case, where = CASES[kind], Where(tmp_path, prepared_subset, out, assets_dir, params_file)
    extra = case.setup(where)
    before = digest(out)
    code, stderr = yolox_stderr(["train", "--params", str(params_file), "--prepared", str(prepared_subset),
                                 "--out",
                        str(case.out(where)), *case.args, *extra], capsys, monkeypatch)
    assert code == 1, stderr[-3000:]
    message, want = error_text(stderr), case.message(where)
    assert (re.fullmatch(want, message) if case.regex else message == want), f"{message!r}\n  != {want!r}"
    assert digest(out) == before                        # the run already there is untouched, no temp file
    if kind == "output-is-a-file":
        assert (tmp_path / "notes.txt").read_text() == "mine"


@contextmanager
def _unwritable_folder(folder: Path) -> Iterator[str]:
    """A folder nobody can write into; yields the reason the OS gives. As root (permissions do not stop
    root) a read-only tmpfs, else a 0555 folder."""
    if os.geteuid() == 0:
        with tmpfs(folder, "1m", read_only=True):
            yield os.strerror(errno.EROFS)
    else:
        folder.mkdir()
        folder.chmod(0o555)
        try:
            yield os.strerror(errno.EACCES)
        finally:
            folder.chmod(0o755)


@pytest.mark.parametrize("kind", ["output-not-writable"], ids=["train-output-not-writable"])
def test_output_folder_not_writable(kind: str, prepared_subset: Path, params_file: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused before any training (not at the end of the first epoch), nothing written there."""
    folder = tmp_path / "ro"
    with _unwritable_folder(folder) as why:
        code, stderr = yolox_stderr(["train", "--params", str(params_file), "--prepared",
                                     str(prepared_subset), "--out", str(folder)],
                           capsys, monkeypatch)
        assert code == 1
        assert error_text(stderr) == (f"train.output_dir (--out) {folder} is not writable ({why}): choose another "
                                      "path or fix its permissions")
        assert list(folder.iterdir()) == []


@pytest.mark.parametrize("kind", ["resume-no-checkpoint"], ids=["train-resume-no-checkpoint"])
def test_resume_without_a_checkpoint_starts_at_epoch_0(kind: str, prepared_subset: Path, params_file: Path,
                                                       tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Not an error: a run killed before its first checkpoint is resumed like that
    (tests/train/test_resume.py); the user is told it starts at epoch 0."""
    from yolox import cli as cli_module

    monkeypatch.setattr(cli_module.console, "width", 1000)    # one log record per line
    out = tmp_path / "empty"
    code, stderr = yolox_stderr(["train", "--params", str(params_file), "--prepared", str(prepared_subset),
                                 "--out", str(out),
                        "--resume", "--set", "train.epochs=1", "--set", "train.max_iters_per_epoch=1"],
                       capsys, monkeypatch)
    assert code == 0, stderr[-3000:]
    assert (f"resume: {out / 'last.pth'} does not exist (killed before its first checkpoint?); starting at epoch 0"
            in stderr)
    assert checkpoint(out / "last.pth")["epoch"] == 1


@pytest.mark.parametrize("signum, step, where", [
    (signal.SIGINT, 3, (1, 1)),         # epoch 2 of 2, after its first step
    (signal.SIGTERM, 2, (0, 2)),        # after the last step of epoch 1, before its end (metrics, checkpoint)
], ids=["train-interrupt-sigint", "train-interrupt-sigterm"])
def test_interrupt_saves_a_checkpoint_that_resumes_exactly(
        signum: int, step: int, where: tuple[int, int], prepared_subset: Path, params_file: Path,
        trained: Path,
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A real signal to this process in the middle of a step: the step finishes, a resumable checkpoint of
    that step is written (atomically; nothing else left), the CLI says where and how to resume and exits
    128 + signum; ``yolox train --resume`` then ends with the uninterrupted run's weights and metrics."""
    out = tmp_path / "run"
    args = ["train", "--params", str(params_file), "--prepared", str(prepared_subset), "--out", str(out)]
    signal_at_step(monkeypatch, signum, step)
    code, stderr = yolox_stderr(args, capsys, monkeypatch)
    epoch, epoch_step = where
    assert code == 128 + signum, stderr[-3000:]
    name = signal.Signals(signum).name
    assert stderr.splitlines()[-2:] == [
        (f"interrupted by {name}: resumable checkpoint {out / 'last.pth'} (epoch {epoch + 1}/{EPOCHS}, "
        f"step {epoch_step}/{ITERS})"),
        f"resume with: yolox train --params {params_file} --prepared {prepared_subset} --out {out} --resume"]
    state = checkpoint(out / "last.pth")
    assert (state["epoch"], state["epoch_step"], state["iteration"]) == (epoch, epoch_step, step)
    assert len(state["history"]) == epoch and set(state["epoch_sums"]) >= {"total_loss", "num_fg"}
    assert temp_files(out) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler     # handlers given back

    monkeypatch.undo()
    if epoch_step < ITERS:     # resuming a checkpoint taken inside epoch 2 with train.epochs=1: refused, kept
        before = digest(out)
        code, stderr = yolox_stderr([*args, "--resume", "--set", "train.epochs=1"], capsys, monkeypatch)
        assert code == 1 and error_text(stderr) == (f"{out / 'last.pth'} already has 1 epochs and part of the "
                                                    "next, more than train.epochs=1: raise train.epochs to continue it")
        assert digest(out) == before
    code, stderr = yolox_stderr([*args, "--resume"], capsys, monkeypatch)
    assert code == 0, stderr[-3000:]
    want, got = checkpoint(trained / "last.pth"), checkpoint(out / "last.pth")
    assert (got["epoch"], got["iteration"], got["ema_updates"]) == (EPOCHS, EPOCHS * ITERS, EPOCHS * ITERS)
    assert "epoch_step" not in got
    assert_same_weights(want["model_raw"], got["model_raw"], exact=False)
    assert_same_weights(want["model"], got["model"], exact=False)
    for key in ("train/total_loss", "train/num_fg", "train/lr"):
        assert [h[key] for h in got["history"]] == pytest.approx([h[key] for h in want["history"]], rel=1e-6), key


@pytest.mark.parametrize("kind", ["second-interrupt"], ids=["train-second-interrupt"])
def test_second_interrupt_while_saving_keeps_the_previous_checkpoint(
        kind: str, prepared_subset: Path, params_file: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C, then Ctrl-C again while the interrupt checkpoint is being written: the run stops at once,
    the half-written file is removed and the epoch-1 checkpoint stays, which is what the CLI names."""
    out = tmp_path / "run"
    signal_at_step(monkeypatch, signal.SIGINT, 3)
    real_save, saves, kept = torch.save, [0], {}

    def save_interrupted_on_second_call(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        saves[0] += 1
        if saves[0] == 1:                                # the epoch-1 checkpoint
            return real_save(obj, f, *args, **kwargs)
        kept.update(digest(out))
        f.write(b"PK\x03\x04 the first bytes of a checkpoint")
        os.kill(os.getpid(), signal.SIGINT)              # the handler raises here
        raise AssertionError("the second SIGINT did not stop the write")

    monkeypatch.setattr(torch, "save", save_interrupted_on_second_call)
    code, stderr = yolox_stderr(["train", "--params", str(params_file), "--prepared", str(prepared_subset),
                                 "--out", str(out)],
                       capsys, monkeypatch)
    assert code == 130, stderr[-3000:]
    assert stderr.splitlines()[-2:] == [
        (f"interrupted by SIGINT: resumable checkpoint {out / 'last.pth'} (the last one written: a second signal "
        "stopped the run at once)"),
        f"resume with: yolox train --params {params_file} --prepared {prepared_subset} --out {out} --resume"]
    assert saves[0] == 2 and digest(out) == {k: v for k, v in kept.items() if not k.endswith(".tmp")}
    assert temp_files(out) == [] and checkpoint(out / "last.pth")["epoch"] == 1


DISK_FULL = (r"no space left for checkpoint {path}: it needs about (\d+\.\d) MiB, (\d+\.\d) MiB free on that disk "
             r"\(the previous checkpoint is kept\); free some space or set train\.output_dir \(--out\) to another "
             r"disk, then resume with --resume")


@pytest.mark.parametrize("real", [True, False], ids=["train-disk-full", "train-disk-full-injected"])
def test_disk_full_while_saving(real: bool, prepared_subset: Path, params_file: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The epoch-2 checkpoint does not fit: one line naming the file, the size needed and the space free,
    exit 1; the epoch-1 checkpoint stays and no temp file is left. ``train-disk-full``: a real 16 MiB
    tmpfs (one 11 MiB nano checkpoint fits, not two: the atomic write needs both at once);
    ``-injected``: torch.save fails as torch does on ENOSPC (RuntimeError, the OSError as its context)."""
    disk = tmp_path / "disk"
    if real:
        context = tmpfs(disk, "16m")
    else:
        disk.mkdir()
        context, real_save, saves = _nothing(), torch.save, [0]

        def save_fails_on_second_call(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            saves[0] += 1
            if saves[0] == 1:
                return real_save(obj, f, *args, **kwargs)
            f.write(b"\0" * 4096)
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None

        monkeypatch.setattr(torch, "save", save_fails_on_second_call)
    with context:
        out = disk / "out"
        code, stderr = yolox_stderr(["train", "--params", str(params_file), "--prepared",
                                     str(prepared_subset), "--out", str(out)],
                           capsys, monkeypatch)
        assert code == 1, stderr[-3000:]
        match = re.fullmatch(DISK_FULL.format(path=re.escape(str(out / "last.pth"))), error_text(stderr))
        assert match, error_text(stderr)
        need, free = map(float, match.groups())
        assert 10 < need < 13 and (free < need or not real)
        assert checkpoint(out / "last.pth")["epoch"] == 1 and temp_files(out) == []


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@pytest.mark.parametrize("failure", ["oserror", "torch-runtimeerror", "runtimeerror-no-room"])
def test_save_checkpoint_reports_a_full_disk(failure: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The three ways a full disk surfaces (an OSError from the flush, torch's RuntimeError with the OSError
    as its context, a torch write error with too little space free): DiskFullError with the exact numbers,
    the previous file intact, no temp file; a write error with room to spare is a CheckpointError."""
    import collections

    path = tmp_path / "last.pth"
    path.write_bytes(b"the previous checkpoint")
    state = {"model": torch.zeros(1_000_000), "epoch": 3}            # 4,000,000 bytes + 1 KiB: 3.8 MiB
    free = 2**20
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda p: usage(2**30, 2**30 - free, free))

    def failing_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"\0" * 100)
        if failure == "oserror":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            if failure == "torch-runtimeerror":
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(DiskFullError) as info:
        checkpoint_module.save_checkpoint(state, path)
    assert str(info.value) == (f"no space left for checkpoint {path}: it needs about 3.8 MiB, 1.0 MiB free on that "
                               "disk (the previous checkpoint is kept); free some space or set train.output_dir "
                               "(--out) to another disk, then resume with --resume")
    assert path.read_bytes() == b"the previous checkpoint" and [p.name for p in tmp_path.iterdir()] == ["last.pth"]


def test_a_write_error_with_room_to_spare_is_not_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from yolox.errors import CheckpointError

    def failing_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(CheckpointError) as info:
        checkpoint_module.save_checkpoint({"model": torch.zeros(10)}, tmp_path / "last.pth")
    assert not isinstance(info.value, DiskFullError)
    assert str(info.value) == (f"cannot write checkpoint {tmp_path / 'last.pth'}: RuntimeError: PytorchStreamWriter "
                               "failed writing file data/0: file write failed")
    assert list(tmp_path.iterdir()) == []


def test_resume_command() -> None:
    from yolox.cli import resume_command

    assert resume_command(["yolox", "-v", "train", "--params", "p y.yaml", "--set", "a.b=1"]) == \
        "yolox -v train --params 'p y.yaml' --set a.b=1 --resume"
    assert resume_command(["yolox", "train", "--resume"]) == "yolox train --resume"
    assert resume_command(["yolox", "pipeline", "--set", "train.epochs=3"]) == \
        "yolox train --set train.epochs=3 --params params/default.yaml --resume"
    assert resume_command(["yolox", "pipeline", "-p", "x.yaml"]) == "yolox train -p x.yaml --resume"
    assert resume_command(["yolox", "pipeline", "-p", "x.yaml"], Path("runs/pipeline/r1/train/last.pth")) == \
        "yolox train -p x.yaml --prepared runs/pipeline/r1/data --out runs/pipeline/r1/train --resume"
    assert resume_command(["yolox", "eval"]) is None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM],
                         ids=["train-sigint-before-training", "train-sigterm-before-training"])
def test_interrupt_before_training_exits_at_once(signum: int, prepared_subset: Path, params_file: Path,
                                                 out: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted while it reads the dataset (nothing trained yet): it stops there, 130 or 143, and the
    run already in the output folder (which --resume would continue) is untouched."""
    from yolox.data import records

    real_load = records.load_prepared

    def load_then_signal(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signum)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(trainer, "load_prepared", load_then_signal)
    before = digest(out)
    code, stderr = yolox_stderr(["train", "--params", str(params_file), "--prepared", str(prepared_subset),
                                 "--out", str(out),
                        "--resume", "--set", f"train.epochs={EPOCHS + 1}"], capsys, monkeypatch)
    assert code == 128 + signum, stderr[-3000:]
    assert stderr.splitlines()[-1] == f"interrupted by {signal.Signals(signum).name}" and "Traceback" not in stderr
    assert digest(out) == before
