"""leadgate's build: the per-lead modules compiled to C extensions by mypyc, the rest as is.

Why: after ten sessions of making the per-lead path do less (BENCHMARKS.md), the largest cost
left in a lead's CPU was the interpreter itself (its loop 26 % of a request's instructions,
its frames and allocations most of the rest). mypyc, mypy's own compiler, turns the same
type-checked Python into C extensions: no C of ours, the source stays the one truth. A lead
takes 15.5 % fewer instructions in process and a whole request 11.8 % fewer (BENCHMARKS.md,
"2026-12-07 (eleventh session)"; docs/architecture.md, "Compiled with mypyc").

- ``LEADGATE_COMPILE=0`` builds the package as plain Python; the code is the same, only
  slower. Without a C compiler or Python's headers the build is plain Python too, with a
  warning; ``LEADGATE_COMPILE=1`` makes that an error (CI and the image set it).
- ``gateway/_compiled.json`` records each compiled module's source digest;
  ``gateway.build.check_compiled`` refuses to start with a module changed since (its
  extension would run instead of the new source). ``make setup`` rebuilds what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "gateway"
RECORD = PACKAGE / "_compiled.json"

#: The modules compiled: a lead's path through the intake, its parsing and normalization, the
#: plan of its decision, the Redis store's arguments and round trips, the ledger, and the
#: request's authentication, rate limit and body. Not compiled: what runs once
#: (configuration, the app's wiring); what aiohttp decorates or reads attributes from (the
#: rest of web/: handlers, middlewares, the answer's writer); what a test replaces at class
#: level (observe/metrics.py); the rules (a ping's are evaluated on a stand-in for its lead,
#: `rules.model._ReadLog`, which compiled code would refuse as not a `Lead`); the embedded
#: store (a dataclass subclassing a Protocol, which mypyc does not support).
COMPILED = [
    "gateway/leads/parse.py",
    "gateway/leads/lead.py",
    "gateway/leads/fingerprint.py",
    "gateway/leads/text.py",
    "gateway/leads/phone.py",
    "gateway/leads/email.py",
    "gateway/leads/email_syntax.py",
    "gateway/leads/lookalike.py",
    "gateway/leads/ids.py",
    "gateway/decision/plan.py",
    "gateway/decision/model.py",
    "gateway/decision/windows.py",
    "gateway/decision/intake.py",
    "gateway/decision/engine.py",
    "gateway/decision/answer.py",
    "gateway/storage/keys.py",
    "gateway/storage/redis.py",
    "gateway/storage/pipeline.py",
    "gateway/storage/deadline.py",
    "gateway/quality/ledger.py",
    "gateway/observe/tally.py",
    "gateway/web/auth.py",
    "gateway/web/body.py",
    "gateway/web/ratelimit.py",
]


def digest(path: Path) -> str:
    """A source's digest, as ``gateway.build`` computes it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def remove_extensions(keep: set[str]) -> None:
    """Removes the extensions an in-place build left beside the sources, but those of the
    modules in ``keep`` (paths without ``.py``): none may shadow a source it was not built
    from this time."""
    for path in PACKAGE.rglob("*.so"):
        module = path.relative_to(HERE).with_name(path.name.split(".")[0]).as_posix()
        if module.removesuffix("__mypyc") not in keep:
            path.unlink()


def cannot_compile() -> str | None:
    """Why this machine cannot build the extensions, or None."""
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (Python.h; Debian's package: python3-dev)"
    return None


def ext_modules() -> list[object]:
    wanted = os.environ.get("LEADGATE_COMPILE", "")
    missing = None if wanted == "0" else cannot_compile()
    if missing is not None:
        if wanted == "1":
            raise SystemExit(f"LEADGATE_COMPILE=1 but {missing}")
        print(f"leadgate: {missing}: building plain Python (slower)", file=sys.stderr)
    if wanted == "0" or missing is not None:
        # Plain Python: no extension may shadow a source, no record claims one.
        remove_extensions(keep=set())
        RECORD.unlink(missing_ok=True)
        return []
    from mypyc.build import mypycify

    # A module taken off the list must not keep running from an old extension.
    remove_extensions(keep={path.removesuffix(".py") for path in COMPILED})
    RECORD.write_text(
        json.dumps(
            {path.removesuffix(".py"): digest(HERE / path) for path in COMPILED},
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )
    # Each module its own extension (separate=True): a build recompiles only what changed,
    # and in parallel (below).
    return list(mypycify(COMPILED, opt_level="3", separate=True))


setup(ext_modules=ext_modules(), options={"build_ext": {"parallel": os.cpu_count() or 1}})
