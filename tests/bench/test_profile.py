"""``python -m bench --profile``: py-spy's stacks sorted into the intake path's stages, the
summary in the run document and the table, and py-spy itself on a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.profile import (
    EVENT_LOOP,
    IDLE,
    py_spy,
    record_argv,
    stage_of,
    summarize,
)

ROOT = "_run_module_as_main (<frozen runpy>:198);run (asyncio/runners.py:190)"
HANDLER = (
    f"{ROOT};RequestHandler._handle_request (aiohttp/web_protocol.py:510)"
    ";metrics_middleware (gateway/web/app.py:29);post_lead (gateway/web/handlers.py:99)"
    ";Intake.submit (gateway/decision/intake.py:131)"
    ";Intake._prepare (gateway/decision/intake.py:194)"
)


@pytest.mark.parametrize(
    ("stack", "stage"),
    [
        # A library's time is the library's, wherever it was called from.
        (
            f"{HANDLER};parse_lead (gateway/leads/model.py:156)"
            ";normalize_email (gateway/leads/email.py:121)"
            ";validate_email (email_validator/validate_email.py:81)"
            ";split_email (email_validator/syntax.py:50)",
            "email-validator",
        ),
        (
            f"{HANDLER};parse_lead (gateway/leads/model.py:156)"
            ";normalize_phone (gateway/leads/phone.py:50)"
            ";parse (phonenumbers/phonenumberutil.py:1)",
            "phonenumbers",
        ),
        # Our own parsing code, and the frames no stage names (re, a dataclass __init__),
        # go to the nearest caller that has a stage.
        (f"{HANDLER};parse_lead (gateway/leads/model.py:156)", "lead parsing (ours)"),
        (
            f"{HANDLER};build_request (gateway/decision/plan.py:80)"
            ";__create_fn__.<locals>.__init__ (<string>:3)",
            "plan (decision request)",
        ),
        (
            f"{HANDLER};build_request (gateway/decision/plan.py:80)"
            ";Fingerprinter.lookups (gateway/leads/fingerprint.py:89)",
            "fingerprints",
        ),
        (
            f"{ROOT};AutoPipeline._drain (gateway/storage/pipeline.py:91)"
            ";AbstractConnection.read_response (redis/asyncio/connection.py:1241)"
            ";Timeout.reschedule (asyncio/timeouts.py:60)",
            "store call / pipeline",
        ),
        (
            f"{HANDLER};Intake._run (gateway/decision/intake.py:258)"
            ";Observer.decided (gateway/observe/metrics.py:330)"
            ";Counter.inc (prometheus_client/metrics.py:300)",
            "metrics",
        ),
        (
            f"{HANDLER};Intake._run (gateway/decision/intake.py:258)"
            ";Observer.decided (gateway/observe/metrics.py:330)",
            "metrics",
        ),
        (
            f"{HANDLER};Intake._run (gateway/decision/intake.py:258)"
            ";QualityLedger.decided (gateway/quality/ledger.py:80)",
            "quality ledger",
        ),
        (
            f"{ROOT};RequestHandler._handle_request (aiohttp/web_protocol.py:510)"
            ";metrics_middleware (gateway/web/app.py:29);post_lead (gateway/web/handlers.py:99)"
            ";_answer_response (gateway/web/handlers.py:90);_json (gateway/web/handlers.py:40)"
            ";Response.__init__ (aiohttp/web_response.py:600)",
            "response (ours)",
        ),
        (
            f"{ROOT};RequestHandler._handle_request (aiohttp/web_protocol.py:510)"
            ";RequestHandler.finish_response (aiohttp/web_protocol.py:700)",
            "aiohttp",
        ),
        (f"{HANDLER}", "intake orchestration"),
        (ROOT, EVENT_LOOP),
        (
            "Thread._bootstrap (threading.py:995);Thread.run (threading.py:975)"
            ";_worker (concurrent/futures/thread.py:81)",
            IDLE,
        ),
    ],
)
def test_a_sample_goes_to_the_innermost_stage_that_names_it(stack: str, stage: str) -> None:
    assert stage_of(stack.split(";")) == stage


def test_the_summary_leaves_idle_samples_out_of_the_shares() -> None:
    raw = "\n".join(
        [
            f"{HANDLER};parse_lead (gateway/leads/model.py:156) 30",
            f"{HANDLER};parse_lead (gateway/leads/model.py:160) 10",
            f"{ROOT};RequestHandler.finish_response (aiohttp/web_protocol.py:700) 60",
            "Thread._bootstrap (threading.py:995);_worker (concurrent/futures/thread.py:81) 900",
            "",
        ]
    )
    summary = summarize(raw)
    assert summary["samples"] == 100
    assert summary["idle_samples"] == 900
    assert summary["stages_pct"] == {"aiohttp": 60.0, "lead parsing (ours)": 40.0}
    # Line numbers are folded: one function, one entry.
    assert summary["top_self_pct"]["parse_lead (gateway/leads/model.py)"] == 40.0


BUSY = """
import time
from gateway.leads.fingerprint import Fingerprinter
from gateway.types import FingerprintKey
f = Fingerprinter([FingerprintKey("k1", b"profile-test-secret-0123456789")])
print("ready", flush=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    f.lookups("email", "jeandupont@gmail.com")
"""


def test_py_spy_on_a_real_process_finds_where_it_spends_its_time(tmp_path: Path) -> None:
    exe = py_spy()
    if exe is None:
        pytest.skip("py-spy is not installed")
    # On the sources (LEADGATE_COMPILED=0): py-spy sees Python frames, and a module compiled
    # by mypyc has none of its own (its time is its Python caller's).
    busy = subprocess.Popen(
        [sys.executable, "-c", BUSY],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
        env={**os.environ, "LEADGATE_COMPILED": "0"},
    )
    try:
        assert busy.stdout is not None
        assert busy.stdout.readline() == b"ready\n"
        out = tmp_path / "busy.pyspy.txt"
        done = subprocess.run(
            record_argv(exe, busy.pid, 1, out, subprocesses=False),
            capture_output=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0 and b"ermission" in done.stderr:
            pytest.skip("ptrace not permitted here (py-spy needs root or CAP_SYS_PTRACE)")
        assert done.returncode == 0, done.stderr.decode()
        # It stopped after its 1 s on its own, the profiled process still running.
        assert busy.poll() is None
    finally:
        busy.kill()
        busy.wait()
        if busy.stdout is not None:
            busy.stdout.close()
    summary = summarize(out.read_text())
    assert summary["samples"] > 50
    # The loop does little else than fingerprint: that stage is most of its time.
    assert max(summary["stages_pct"], key=summary["stages_pct"].__getitem__) == "fingerprints"
