"""A request's deadline for the store: however many round trips a request makes, and however
long it waits in the auto-pipeline's queue behind a Redis that does not answer, it gets its
answer (or ``StoreUnavailable``) once the store's socket timeout has passed since its first
store call.

The HTTP layer opens a ``Budget`` per request (``open_budget``); the first store call starts
its clock (``deadline_for``), so the time spent reading a slow upload does not count. Work
outside a request (commands, the delivery worker, a metrics scrape) has no budget: each call
then gets the socket timeout from when it is made. Deadlines are event-loop times
(``loop.time()``, monotonic), the clock asyncio's timers use.
"""

from __future__ import annotations

from contextvars import ContextVar, Token


class Budget:
    """One request's store deadline: ``None`` until its first store call sets it."""

    __slots__ = ("deadline",)

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline


# A mutable holder, so the deadline set by the first call is seen by the request's later
# calls and by the tasks it starts (a task copies the context, the holder is shared).
_BUDGET: ContextVar[Budget | None] = ContextVar("leadgate_store_budget", default=None)


def open_budget(deadline: float | None = None) -> Token[Budget | None]:
    """Give the current context (a request's task) a budget; ``deadline`` (loop time) fixes it
    now instead of at the first store call. ``close_budget`` with the token undoes it."""
    return _BUDGET.set(Budget(deadline))


def close_budget(token: Token[Budget | None]) -> None:
    _BUDGET.reset(token)


def deadline_for(now: float, timeout_s: float) -> float:
    """The deadline of a store call made at ``now`` (loop time): the request's, started now if
    this is its first store call; without a request, ``now + timeout_s``."""
    budget = _BUDGET.get()
    if budget is None:
        return now + timeout_s
    if budget.deadline is None:
        budget.deadline = now + timeout_s
    return budget.deadline


def request_deadline() -> float | None:
    """The current request's deadline once its first store call set it, else None."""
    budget = _BUDGET.get()
    return None if budget is None else budget.deadline
