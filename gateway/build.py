"""Which of the package's modules run compiled, and a refusal to run stale ones.

``setup.py`` compiles the per-lead modules with mypyc and records each one's source digest in
``_compiled.json`` beside this file. An extension module is imported before its ``.py``
source, so a source edited after its build would silently not run: ``check_compiled`` (called
when the package is imported) refuses that, naming the file to rebuild. No record: a plain
Python build, nothing to check.

``LEADGATE_COMPILED=0`` runs the sources instead of the extensions (``run_sources``): the
same code, slower, seen function by function by cProfile, py-spy and the bench's opcode
counts, and with every line in a traceback.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType

from gateway.errors import StaleBuild

PACKAGE = Path(__file__).resolve().parent
RECORD_NAME = "_compiled.json"


def _record(package: Path) -> dict[str, str]:
    """The build's record: module path (``gateway/leads/parse``) -> its source's digest."""
    record = package / RECORD_NAME
    if not record.exists():
        return {}
    digests: dict[str, str] = json.loads(record.read_text())
    return digests


def _extension(source: Path) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return None


def _with_extension(modules: Iterable[str], root: Path) -> dict[str, Path]:
    found = {}
    for module in modules:
        extension = _extension(root / f"{module}.py")
        if extension is not None:
            found[module] = extension
    return found


def compiled_modules(package: Path = PACKAGE) -> dict[str, Path]:
    """The recorded modules that have an extension beside their source: module path ->
    the extension file."""
    return _with_extension(_record(package), package.parent)


def check_compiled(package: Path = PACKAGE) -> int:
    """Raises ``StaleBuild`` if a compiled module's source is not the one it was compiled
    from; returns how many modules run compiled."""
    digests = _record(package)
    root = package.parent
    compiled = _with_extension(digests, root)
    stale = [
        module
        for module in compiled
        if hashlib.sha256((root / f"{module}.py").read_bytes()).hexdigest() != digests[module]
    ]
    if stale:
        raise StaleBuild(
            f"{', '.join(f'{m}.py' for m in stale)} changed since it was compiled (mypyc): its "
            "old extension would run instead. Rebuild with `make setup` (or `pip install -e .`),"
            " run the sources with LEADGATE_COMPILED=0, or build plain Python with"
            ' `LEADGATE_COMPILE=0 make setup` (docs/architecture.md, "Compiled with mypyc")'
        )
    return len(compiled)


class _Sources(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' sources ahead of their extensions."""

    def __init__(self, sources: Mapping[str, Path]) -> None:
        self.sources = dict(sources)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        source = self.sources.get(fullname)
        return None if source is None else importlib.util.spec_from_file_location(fullname, source)


def run_sources(package: Path = PACKAGE) -> None:
    """From now on, import the compiled modules from their sources (before any is imported:
    one already imported stays compiled)."""
    root = package.parent
    sources = {m.replace("/", "."): root / f"{m}.py" for m in compiled_modules(package)}
    if sources and not any(isinstance(f, _Sources) for f in sys.meta_path):
        sys.meta_path.insert(0, _Sources(sources))


def use_build(environ: Mapping[str, str], package: Path = PACKAGE) -> int:
    """How many modules run compiled: none with ``LEADGATE_COMPILED=0`` (their sources run),
    else every compiled one, checked to be of its source (``check_compiled``)."""
    if environ.get("LEADGATE_COMPILED") == "0":
        run_sources(package)
        return 0
    return check_compiled(package)
