"""``PingPostLimits``: pings per post, per partner, over a sliding hour."""

from __future__ import annotations

from gateway.web.ratelimit import PING_RETRY_AFTER_S, PING_WINDOW_S, PingPostLimits

T = 1_000 * PING_WINDOW_S  # the start of a window


def test_pings_ahead_of_the_first_post_then_per_post() -> None:
    limits = PingPostLimits()
    assert [limits.ping("p", 3, T + i) for i in range(3)] == [0, 0, 0]
    assert limits.ping("p", 3, T + 3) == PING_RETRY_AFTER_S  # refused pings are not counted
    limits.posted("p", T + 4)
    assert [limits.ping("p", 3, T + 5 + i) for i in range(3)] == [0, 0, 0]
    assert limits.ping("p", 3, T + 9) == PING_RETRY_AFTER_S
    # Another partner has its own tally.
    assert limits.ping("q", 3, T + 9) == 0


def test_the_past_hour_fades_out() -> None:
    limits = PingPostLimits()
    for i in range(4):
        limits.ping("p", 4, T + i)
    assert limits.ping("p", 4, T + 10) == PING_RETRY_AFTER_S
    # Half-way through the next window, half of the last window's pings still count: 2 < 4.
    assert limits.ping("p", 4, T + 1.5 * PING_WINDOW_S) == 0
    # Two windows later, nothing is left.
    assert [limits.ping("p", 4, T + 3 * PING_WINDOW_S + i) for i in range(4)] == [0, 0, 0, 0]
