"""Durations as people write them in the config file (``45s``, ``30m``, ``1h``, ``1d``, ``2w``).

Everything inside leadgate counts whole seconds; this is the one place that reads the
human form. There are no months or years: their length varies, and a dedup window has to
mean the same thing in February and in March (calendar months exist only for caps, as
``CalendarPeriod``).
"""

from __future__ import annotations

import re

#: Seconds per unit suffix.
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}

_DURATION = re.compile(r"(-?\d+)([smhdw])")
#: The longest duration the config may name: a century. Longer is a typo (a window of
#: a million weeks would have every lead read one dedup hash per 24 days since 1970), and
#: every duration must stay a number Redis and its scripts read exactly (below 2^53 ms).
MAX_DURATION_S = 100 * 365 * 86_400


def parse_duration_s(text: str | int) -> int:
    """Return the duration ``text`` stands for, in whole seconds (always > 0).

    ``text`` is a whole number followed by one unit (``s``, ``m``, ``h``, ``d``, ``w``), or
    an int that already counts seconds, at most ``MAX_DURATION_S``. Raises ``ValueError``
    naming the bad value.
    """
    # bool is an int subclass: `window: yes` must not silently become a one-second window.
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ValueError(f"{text!r} is not a duration like 30m, 1h, 1d")
    if isinstance(text, int):
        if text <= 0:
            raise ValueError(f"{text!r} is not a positive number of seconds")
        seconds = text
    else:
        match = _DURATION.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a duration like 30m, 1h, 1d")
        seconds = int(match.group(1)) * UNIT_S[match.group(2)]
        if seconds <= 0:
            raise ValueError(f"{text!r} is not a positive duration")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{text!r} is longer than 100 years")
    return seconds
