"""``python -m bench --profile``: py-spy on the gateway during a scenario, CPU by stage.

py-spy samples the gateway's Python stacks (``record --format raw``: one line per distinct
stack, ``frame;frame;... count``, root first; the file loads into speedscope.app or
flamegraph.pl as is). ``stages`` sorts every sample into one stage of the intake path by the
innermost frame that names one (``STAGES``, first match from the leaf up), so that time inside
a library is charged to the library (email-validator, phonenumbers, redis-py) and the rest to
the part of ours that called it; aiohttp's frames only when no frame of ours is on the stack
(``AIOHTTP``: parsing requests, writing responses). Samples no pattern matches are the event
loop's own work (uvloop's C code shows as the frame that runs the loop).

A thread pool's worker waiting for work is reported by py-spy as running (it blocks in C
without releasing the frame py-spy watches); such samples are counted apart as ``idle`` and
left out of the shares.

The modules compiled by mypyc (setup.py) have no Python frames: their time is charged to
their interpreted caller (the handlers' stage). ``LEADGATE_COMPILED=0 python -m bench
--profile`` runs the gateway on their sources, whose stages show, at plain Python's speed.

Sampling pauses the process ~200 times a second (``RATE_HZ``): a profiled run's throughput is
a little lower and is not a figure to compare with unprofiled runs.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RATE_HZ = 200

#: (stage, pattern on one frame ``function (path:line)``), tried in order on each frame from
#: the leaf up; the first frame any pattern matches decides. Frames no pattern matches (the
#: standard library's ``re``, ``enum``, ``dataclasses``' generated ``__init__``, the config's
#: properties) are passed over, so their time goes to whoever called them.
STAGES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (stage, re.compile(pattern))
    for stage, pattern in (
        ("email-validator", r"\(email_validator/"),
        ("phonenumbers", r"\(phonenumbers/"),
        ("fingerprints", r"\(gateway/leads/fingerprint\.py"),
        ("rules", r"\(gateway/rules/"),
        ("plan (decision request)", r"\(gateway/(decision/(plan|windows)|storage/keys|leads/ids)"),
        ("lead parsing (ours)", r"\(gateway/leads/"),
        ("store call / pipeline", r"\((gateway/storage/|gateway/decision/engine|redis/|hiredis)"),
        ("metrics", r"\((gateway/observe/|gateway/quality/metrics\.py|prometheus_client/)"),
        ("quality ledger", r"\(gateway/quality/ledger\.py"),
        ("logging", r"\(logging/"),
        ("body read + JSON", r"\(gateway/web/body\.py"),
        ("response (ours)", r"^(_json|_answer_response|Answer\.to_json|problem_body) "),
        ("auth + rate limit", r"^(_partner|_api_key|Intake\.authenticate|TokenBucket\.\w+) "),
        ("intake orchestration", r"\(gateway/decision/intake\.py"),
        ("handlers + middlewares (ours)", r"\(gateway/web/"),
    )
)
#: aiohttp's frames count as aiohttp's only when none of ours is above them: what our code
#: asks of aiohttp (building a response, reading a body) is charged to our stage.
AIOHTTP = ("aiohttp", re.compile(r"\((aiohttp|multidict|yarl)/"))
EVENT_LOOP = "event loop (uvloop, asyncio)"
IDLE = "idle"
#: Leaf frames that are a thread waiting, not working.
_IDLE_LEAVES = re.compile(r"^_worker \(concurrent/futures/thread\.py")


def parse_raw(text: str) -> Iterable[tuple[list[str], int]]:
    """py-spy's raw format: ``(frames root first, sample count)`` per line."""
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def stage_of(frames: list[str]) -> str:
    """The stage one sample belongs to (``frames`` root first)."""
    if frames and _IDLE_LEAVES.match(frames[-1]):
        return IDLE
    for frame in reversed(frames):
        for stage, pattern in STAGES:
            if pattern.search(frame):
                return stage
    if any(AIOHTTP[1].search(frame) for frame in frames):
        return AIOHTTP[0]
    return EVENT_LOOP


def _function(frame: str) -> str:
    """``validate_email (email_validator/validate_email.py:81)`` without the line number."""
    return re.sub(r":\d+\)$", ")", frame)


def summarize(text: str, top: int = 15) -> dict[str, Any]:
    """Shares (percent of the non-idle samples) by stage, largest first, and the functions
    with the most samples of their own."""
    stages: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, count in parse_raw(text):
        stage = stage_of(frames)
        stages[stage] += count
        if stage != IDLE:
            leaves[_function(frames[-1])] += count
    idle = stages.pop(IDLE, 0)
    busy = sum(stages.values())

    def pct(n: int) -> float:
        return round(100.0 * n / busy, 1) if busy else 0.0

    return {
        "samples": busy,
        "idle_samples": idle,
        "stages_pct": {stage: pct(n) for stage, n in stages.most_common()},
        "top_self_pct": {fn: pct(n) for fn, n in leaves.most_common(top)},
    }


def py_spy() -> str | None:
    """py-spy's path: beside this Python (a venv's ``bin``) or on ``PATH``."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record_argv(
    exe: str, pid: int, duration_s: float, out: Path, *, subprocesses: bool
) -> list[str]:
    """py-spy ``record`` of ``pid`` (and its children, for ``serve --workers N``)."""
    return [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, int(duration_s))),
        "--rate",
        str(RATE_HZ),
        "--format",
        "raw",
        "--output",
        str(out),
        *(["--subprocesses"] if subprocesses else []),
    ]


def table(name: str, summary: dict[str, Any]) -> str:
    """The stage shares as text, for the run's printout."""
    lines = [
        f"  {name}: CPU by stage (py-spy, {summary['samples']:,} samples"
        + (f", {summary['idle_samples']:,} idle left out" if summary["idle_samples"] else "")
        + ")"
    ]
    for stage, share in summary["stages_pct"].items():
        lines.append(f"    {share:5.1f} %  {stage}")
    return "\n".join(lines)
