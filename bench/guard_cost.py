"""``python -m bench.guard_cost``: what issue 17's per-request guards cost on the hot path,
in process, in microseconds (BENCHMARKS.md, "Connection and request deadlines").

- the repeated-member check of a JSON body (``web.body.parse_json_object`` against a bare
  ``orjson.loads``), for one lead and for a 1,000-lead batch;
- a request's store deadline (``storage.deadline``: the budget opened, started by the first
  store call, closed) and the timer each store call arms (``loop.call_at`` and its cancel).

Prints one JSON object. In process and single-threaded: what each request pays, not a
throughput (``python -m bench single`` measures that, before and after).
"""

from __future__ import annotations

import asyncio
import json
import timeit
from collections.abc import Callable

import orjson

from gateway.storage.deadline import close_budget, deadline_for, open_budget
from gateway.web.body import parse_json_object

LEAD = {
    "campaign": "acme-always-on",
    "email": "marie.dupont@gmail.com",
    "first_name": "Marie",
    "last_name": "Dupont",
    "phone": "0612345678",
    "postal_code": "75011",
    "ref": "r-123456",
    "consent": {"given": True, "at": "2026-11-20T10:00:00+01:00", "text": "J'accepte"},
}


def _best_us(call: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=7)) / number * 1e6


async def _async_costs() -> dict[str, float]:
    loop = asyncio.get_running_loop()

    def budget() -> None:
        token = open_budget()
        deadline_for(loop.time(), 2.0)
        close_budget(token)

    def timer() -> None:
        loop.call_at(loop.time() + 2.0, print).cancel()

    return {
        "store_budget_us": round(_best_us(budget, 200_000), 3),
        "store_call_timer_us": round(_best_us(timer, 200_000), 3),
    }


def main() -> int:
    lead = orjson.dumps(LEAD)
    batch = orjson.dumps({"leads": [{**LEAD, "email": f"m{i}@example.fr"} for i in range(1000)]})
    result: dict[str, object] = {
        "lead_bytes": len(lead),
        "lead_orjson_us": round(_best_us(lambda: orjson.loads(lead), 20_000), 2),
        "lead_checked_us": round(_best_us(lambda: parse_json_object(lead), 20_000), 2),
        "batch_bytes": len(batch),
        "batch_orjson_us": round(_best_us(lambda: orjson.loads(batch), 50), 1),
        "batch_checked_us": round(_best_us(lambda: parse_json_object(batch), 50), 1),
    }
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        result.update(asyncio.run(_async_costs()))
    else:
        result.update(uvloop.run(_async_costs()))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
