"""Time as Microsoft's services write it: UTC with up to 7 fractional digits (100 ns ticks).

Times are kept as integer ticks (100 ns since the Unix epoch), so comparisons in `$filter`
are exact at the 7th digit, as they are in .NET.
"""

from __future__ import annotations

import datetime as dt
import re
import time

TICKS_PER_SECOND = 10_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?"
    r"(Z|[+-]\d{2}:\d{2})$"
)


def now_ticks() -> int:
    return time.time_ns() // 100


def format_ticks(ticks: int) -> str:
    """`2020-09-06T14:46:57.0733333Z`; trailing zeros trimmed like .NET's `FFFFFFF`
    (Microsoft's own example has `2020-09-06T14:46:57.29Z`)."""
    seconds, frac = divmod(ticks, TICKS_PER_SECOND)
    base = (_EPOCH + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        return f"{base}.{frac:07d}".rstrip("0") + "Z"
    return base + "Z"


# Microsoft keeps its times at different precisions and .NET trims trailing zeros, so each
# field has its own look in Microsoft's example (tests/devcloud/test_shape.py compares them).


def full_ticks(ticks: int) -> int:
    """A datetime2(7) value that shows all 7 digits (`.7182276`): alert creationTime, comment
    times, firstSeen. The last digit is made odd so trimming never shortens it."""
    return ticks | 1


def sql_datetime(ticks: int, *, seven_digits: bool = False) -> int:
    """SQL Server `datetime` (1/300 s steps): `.2433333`, `.2566667` or `.88`, as the example's
    alert lastUpdatedTime; never fewer than 2 digits. `seven_digits` skips the steps that
    print short, as the example's incident createdTime always has 7."""
    steps = (ticks * 3 + 50_000) // 100_000
    if steps % 30 == 0 or (seven_digits and steps % 3 == 0):
        steps += 1
    return (steps * 100_000 + 1) // 3


def centiseconds_up(ticks: int) -> int:
    """10 ms steps, rounded up, with exactly 2 digits (`.29`): the example's incident
    lastUpdateTime. Rounding up keeps a change strictly after the previous one."""
    steps = -(-ticks // 100_000)
    if steps % 10 == 0:
        steps += 1
    return steps * 100_000


def whole_seconds(ticks: int) -> int:
    """No fraction (`05:22:59Z`): firstActivity/lastActivity of cloud-app and mail alerts."""
    return ticks - ticks % TICKS_PER_SECOND


def parse_ticks(text: str) -> int:
    """Parse an ISO 8601 date-time with an offset into ticks; ValueError when malformed."""
    m = _ISO.match(text)
    if not m:
        raise ValueError(text)
    year, month, day, hour, minute = (int(m.group(i)) for i in range(1, 6))
    second = int(m.group(6) or 0)
    frac = int((m.group(7) or "").ljust(7, "0"))
    stamp = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    zone = m.group(8)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        stamp -= sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return int((stamp - _EPOCH).total_seconds()) * TICKS_PER_SECOND + frac


def entra_timestamp(when: float | None = None) -> str:
    """`2016-01-09 02:02:12Z`: the format of Entra error bodies."""
    when = time.time() if when is None else when
    return dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
