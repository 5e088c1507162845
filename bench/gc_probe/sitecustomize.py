"""The garbage collector's share of a process's CPU, for the bench (BENCHMARKS.md, "Garbage
collection, again").

Put this folder first on ``PYTHONPATH`` and name an output folder in ``LEADGATE_GC_PROBE``:
every Python process started so (the gateway the bench starts among them) times each of its
collections through ``gc.callbacks`` and, at exit, writes ``gc-<pid>.txt`` there: its command
line, its CPU time, the time its collections took and their count per generation::

    LEADGATE_GC_PROBE=/tmp/gc PYTHONPATH=bench/gc_probe:. python -m bench --no-baselines single
    cat /tmp/gc/gc-*.txt

Without ``LEADGATE_GC_PROBE`` it does nothing. ``LEADGATE_GC_THRESHOLD=a,b,c`` sets the
collector's thresholds at start (``settle_heap`` sets the first one again once start-up is
done, so this tries the older generations' only, or any on processes that do not settle).
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import time
from typing import Any

_OUT = os.environ.get("LEADGATE_GC_PROBE")

if _OUT:
    _started_cpu = time.process_time()
    _began = [0.0]
    _count = [0, 0, 0]
    _seconds = [0.0, 0.0, 0.0]

    def _timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            _began[0] = time.perf_counter()
            return
        generation = info["generation"]
        _count[generation] += 1
        _seconds[generation] += time.perf_counter() - _began[0]

    def _write(folder: str = _OUT) -> None:
        cpu = time.process_time() - _started_cpu
        spent = sum(_seconds)
        os.makedirs(folder, exist_ok=True)
        share = 100 * spent / max(cpu, 1e-9)
        each = [round(s, 3) for s in _seconds]
        with open(os.path.join(folder, f"gc-{os.getpid()}.txt"), "w") as out:
            out.write(f"{' '.join(sys.argv)}\n")
            out.write(f"cpu {cpu:.3f} s, collections {spent:.3f} s ({share:.1f} %);")
            out.write(f" per generation: {_count} collections, {each} s\n")

    gc.callbacks.append(_timed)
    atexit.register(_write)
    thresholds = os.environ.get("LEADGATE_GC_THRESHOLD")
    if thresholds:
        gc.set_threshold(*(int(t) for t in thresholds.split(",")))
