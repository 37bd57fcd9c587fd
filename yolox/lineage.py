"""Lineage: which data and which code made a result.

- :func:`data_version`: the DVC directory hash (``<md5>.dir``) of a prepared dataset, exactly as ``dvc add``
  or a ``dvc.lock`` entry records it, so an MLflow run's ``data_version`` tag names a DVC object that
  ``dvc pull`` can fetch, and "which data trained champion v7?" has an answer in ``dvc.lock``. It uses DVC's
  own hashing library (``dvc-data``), never the DVC repository or CLI: the library reads lineage, it does
  not orchestrate (``dvc.yaml`` does).
- :func:`stage_code`: the project files a pipeline stage runs (the CLI command, its stage function in
  :mod:`yolox.pipeline`, and every ``yolox`` module they import, transitively, lazy imports included), from
  which ``dvc.yaml``'s code dependencies are written (:func:`dvc_code_deps`; ``tests/scenarios/test_dvc.py`` checks that
  ``dvc.yaml`` covers them), so a change to e.g. ``yolox/ops/nms.py`` re-runs every stage that runs NMS.
"""

from __future__ import annotations

import ast
import hashlib
import os
import tempfile
from functools import cache
from pathlib import Path

from yolox.assets import cache_dir

PACKAGE_ROOT = Path(__file__).resolve().parent
"""The ``yolox`` package folder."""

STAGE_FUNCTIONS = {"prepare": ("yolox.data.stage", "prepare"), "train": ("yolox.train.stage", "train"),
                   "evaluate": ("yolox.evaluate.stage", "evaluate"), "export": ("yolox.export.stage", "export")}
"""DVC stage -> (its stage module, its function there): what ``yolox <stage>`` runs after reading its params."""


def data_version(path: str | Path) -> str:
    """DVC's md5 directory hash of ``path`` (e.g. ``f62b...77.dir``), computed without writing any DVC cache.

    Re-hashing is cheap: DVC's state database (``dvc_data.hashfile.state``: path -> inode, mtime, size ->
    md5) remembers every file hashed, so an unchanged file is not read again, and the folder's hash is
    remembered under a digest of its listing (every file's relative path, inode, mtime and size: what the
    state trusts per file), so an unchanged folder costs one walk and one ``stat`` per file. Both live in
    :func:`state_dir`. A folder with a few changed files reads only those.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.cache import Cache
    from dvc_data.hashfile.db.local import LocalHashFileDB
    from dvc_data.hashfile.state import State
    from dvc_objects.fs.local import LocalFileSystem

    path = Path(path).resolve()
    if not path.exists():
        raise FileNotFoundError(f"no prepared dataset at {path}")
    where = state_dir()
    where.mkdir(parents=True, exist_ok=True)
    key = f"{path}\0{listing_digest(path)}"
    with Cache(str(where / "dir-hashes")) as memo:
        known = memo.get(key)
        if known:
            return str(known)
        fs = LocalFileSystem()
        state = State(str(path), str(where))
        try:
            with tempfile.TemporaryDirectory() as tmp:
                odb = LocalHashFileDB(fs, tmp, state=state)
                _, _, obj = build(odb, str(path), fs, "md5", dry_run=True)
        finally:
            state.close()
        value = str(obj.hash_info.value)
        memo.set(key, value)
    return value


def state_dir() -> Path:
    """Where :func:`data_version` keeps DVC's state database and the folders' hashes:
    ``$YOLOX_CACHE_DIR/dvc-state`` (default ``~/.cache/yolox/dvc-state``)."""
    return cache_dir() / "dvc-state"


def listing_digest(folder: Path) -> str:
    """md5 of the sorted (relative path, inode, mtime in ns, size) of every file DVC hashes in ``folder``
    (``os.walk`` without following links to folders, as ``dvc_data`` walks; links to files followed),
    and of the ``dvc_data`` version (its hash format)."""
    import dvc_data

    entries = []
    base = len(str(folder)) + 1
    for root, _, files in os.walk(folder):
        for name in files:
            full = os.path.join(root, name)
            st = os.stat(full)
            entries.append(f"{full[base:]}\0{st.st_ino}\0{st.st_mtime_ns}\0{st.st_size}")
    entries.sort()
    digest = hashlib.md5(getattr(dvc_data, "__version__", "?").encode())
    digest.update("\n".join(entries).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


# --- code lineage ------------------------------------------------------------------------------------


def _module_file(module: str) -> Path | None:
    """``yolox.a.b`` -> ``yolox/a/b.py`` or ``yolox/a/b/__init__.py`` (None for non-project modules)."""
    parts = module.split(".")
    if parts[0] != "yolox":
        return None
    base = PACKAGE_ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(nodes: list[ast.AST], module: str) -> set[str]:
    """Project modules imported anywhere under ``nodes`` (``from yolox.x import y`` gives ``yolox.x`` and, when
    ``y`` is a submodule, ``yolox.x.y``; relative imports are resolved against ``module``)."""
    found: set[str] = set()
    package = module if _module_file(module) and _module_file(module).name == "__init__.py" else \
        module.rpartition(".")[0]
    for root in nodes:
        for node in ast.walk(root):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if _module_file(m) is not None}


@cache
def _file_imports(module: str) -> frozenset[str]:
    path = _module_file(module)
    assert path is not None
    return frozenset(_imports([ast.parse(path.read_text())], module))


def _type_checking_only(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` at module level: imports for annotations only, never run."""
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _function_imports(module: str, function: str) -> set[str]:
    """Imports at module level of ``module`` plus those inside its top-level ``function`` and inside every
    top-level function or class of the module that ``function`` names, transitively."""
    path, tree = _module_tree(module)
    defs = {n.name: n for n in tree.body if isinstance(n, _DEFS)}
    if function not in defs:
        raise KeyError(f"{path}: no top-level function {function!r}")
    todo, used = [function], set()
    while todo:
        name = todo.pop()
        if name in used:
            continue
        used.add(name)
        todo.extend(n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name) and n.id in defs)
    return _imports(_module_level(tree) + [defs[n] for n in sorted(used)], module)


def _module_level_imports(module: str) -> set[str]:
    """Imports that run when ``module`` is imported: its module-level statements (not the bodies of its functions
    and classes, not ``if TYPE_CHECKING:``)."""
    return _imports(_module_level(_module_tree(module)[1]), module)


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _module_tree(module: str) -> tuple[Path, ast.Module]:
    path = _module_file(module)
    assert path is not None
    return path, ast.parse(path.read_text())


def _module_level(tree: ast.Module) -> list[ast.stmt]:
    """The statements that run at import: not function or class bodies, not ``if TYPE_CHECKING:``."""
    return [n for n in tree.body if not isinstance(n, _DEFS) and not _type_checking_only(n)]


def _closure(seeds: set[str]) -> set[str]:
    """Every project module reached from ``seeds`` (packages' ``__init__`` included: importing ``a.b.c``
    runs ``a/__init__.py`` and ``a/b/__init__.py``)."""
    todo, seen = list(seeds), set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        parts = mod.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(_file_imports(mod))
    return seen


def stage_code(stage: str) -> list[Path]:
    """The project source files DVC stage ``stage`` (``prepare``, ``train``, ``evaluate``, ``export``) runs, sorted:
    its stage function (:data:`STAGE_FUNCTIONS`) with the transitive closure of the ``yolox`` modules it imports, and
    ``yolox/cli.py`` with what it imports at module level (the command's glue reads params and calls the stage
    function). The other stages' packages are not deps: editing the registry or the gate leaves ``prepare`` and
    ``train`` cached. Raises KeyError for an unknown stage."""
    module, function = STAGE_FUNCTIONS[stage]
    seeds = _function_imports(module, function) | _module_level_imports("yolox.cli")
    modules = _closure(seeds) | {module, "yolox.cli", "yolox"}
    return sorted({_module_file(m) for m in modules if _module_file(m) is not None})


def dvc_code_deps(stage: str, project_root: str | Path | None = None) -> list[str]:
    """:func:`stage_code` as ``dvc.yaml`` deps relative to the project root, a whole package folder wherever
    every ``.py`` file of it is needed (``yolox/models`` instead of its seven files)."""
    root = Path(project_root) if project_root else PACKAGE_ROOT.parent
    files = set(stage_code(stage))
    deps: set[Path] = set()
    for f in files:
        folder = f.parent
        while folder != PACKAGE_ROOT and all(p in files for p in folder.rglob("*.py")):
            f, folder = folder, folder.parent
        deps.add(f)
    deps = {d for d in deps if not any(p in deps for p in d.parents)}
    return sorted(str(d.relative_to(root)) for d in deps)


# --- what a model was trained from: the skip rule's inputs ---------------------------------------------

IGNORED_PARAMS = ("data.source", "data.images", "data.val_source", "data.prepared_dir", "train.output_dir",
                  "export.onnx_path", "export.tensorrt_timing_cache", "tracking.run_name", "tracking.runs_dir")
"""Params that say WHERE things are, not what is trained: left out of :func:`params_digest` (the data's content is
:func:`data_version`'s), so moving a folder does not make a night retrain."""


def params_digest(params: object) -> str:
    """``sha256:<16 hex>`` of the params (a :class:`yolox.config.PipelineParams`) minus :data:`IGNORED_PARAMS`:
    equal digests mean the same recipe. ``model.weights`` counts as written (``champion`` stays ``champion``)."""
    import json

    flat = {k: v for k, v in params.flat().items() if k not in IGNORED_PARAMS}  # type: ignore[attr-defined]
    return "sha256:" + hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:16]


@cache
def code_version() -> str:
    """``sha256:<16 hex>`` of the code that makes a model: every ``yolox`` source file the train stage runs
    (:func:`stage_code`), except ``cli.py`` and ``pipeline.py``, which only compose stages. Equal versions mean
    the same training code, whatever the git commit (a checkout without git included)."""
    digest = hashlib.sha256()
    for path in stage_code("train"):
        if path.parent == PACKAGE_ROOT and path.name in ("cli.py", "pipeline.py"):
            continue
        digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()[:16]
