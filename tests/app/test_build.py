"""The compiled build (setup.py, mypyc): a module whose source changed since it was compiled is
refused by name, ``LEADGATE_COMPILED=0`` runs the sources, and the checkout's own build is
what ``gateway.COMPILED_MODULES`` says."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from support import run_sources

import gateway
from gateway.build import check_compiled, compiled_modules, use_build
from gateway.errors import StaleBuild

ROOT = Path(__file__).resolve().parents[2]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _package(tmp_path: Path, *, compiled: dict[str, str], record: dict[str, str]) -> Path:
    """A package ``gateway`` under tmp_path: each of ``compiled`` (module -> source) with a
    stand-in extension file beside it, and ``_compiled.json`` holding ``record``."""
    package = tmp_path / "gateway"
    package.mkdir()
    for module, source in compiled.items():
        path = tmp_path / f"{module}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        path.with_suffix(SUFFIX).write_bytes(b"")
    (package / "_compiled.json").write_text(json.dumps(record))
    return package


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_modules_compiled_from_their_sources_pass(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        compiled={"gateway/a": "A = 1\n", "gateway/sub/b": "B = 2\n"},
        record={"gateway/a": _digest("A = 1\n"), "gateway/sub/b": _digest("B = 2\n")},
    )

    assert check_compiled(package) == 2
    assert set(compiled_modules(package)) == {"gateway/a", "gateway/sub/b"}


def test_a_source_changed_since_its_build_is_refused_by_name(tmp_path: Path) -> None:
    package = _package(
        tmp_path,
        compiled={"gateway/a": "A = 1\n", "gateway/sub/b": "B = 3  # edited\n"},
        record={"gateway/a": _digest("A = 1\n"), "gateway/sub/b": _digest("B = 2\n")},
    )

    with pytest.raises(StaleBuild, match=r"gateway/sub/b\.py changed since it was compiled"):
        check_compiled(package)
    # The sources may still run, without the extensions.
    assert use_build({"LEADGATE_COMPILED": "0"}, package) == 0


def test_a_recorded_module_without_its_extension_runs_as_python(tmp_path: Path) -> None:
    package = _package(tmp_path, compiled={}, record={"gateway/gone": _digest("x")})
    (tmp_path / "gateway" / "gone.py").write_text("changed = True\n")

    assert check_compiled(package) == 0


def test_a_plain_python_build_has_nothing_to_check(tmp_path: Path) -> None:
    (tmp_path / "gateway").mkdir()

    assert check_compiled(tmp_path / "gateway") == 0
    assert compiled_modules(tmp_path / "gateway") == {}


#: Where a fresh interpreter's gateway runs from: how many modules compiled, and the files
#: two of them came from.
_WHERE = (
    "import orjson, gateway, gateway.leads.parse as p, gateway.storage.redis as r; "
    "print(orjson.dumps([gateway.COMPILED_MODULES, p.__file__, r.__file__]).decode())"
)


def test_the_checkouts_build_runs_what_it_says() -> None:
    compiled = compiled_modules()
    assert len(compiled) == gateway.COMPILED_MODULES

    done = subprocess.run([sys.executable, "-c", _WHERE], capture_output=True, check=True, cwd=ROOT)
    count, parse, redis = orjson.loads(done.stdout)

    assert count == len(compiled)
    if "gateway/leads/parse" in compiled:  # `make setup` (LEADGATE_COMPILE=0: none)
        assert parse.endswith(SUFFIX)
        assert redis.endswith(SUFFIX)
    else:
        assert parse.endswith(".py")


def test_leadgate_compiled_0_runs_the_sources() -> None:
    count, parse, redis = run_sources(_WHERE)

    assert count == 0
    assert parse == str(ROOT / "gateway" / "leads" / "parse.py")
    assert redis == str(ROOT / "gateway" / "storage" / "redis.py")
