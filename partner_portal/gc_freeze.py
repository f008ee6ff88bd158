"""Python's cyclic garbage collector in the long-running processes (web and worker).

A full collection walks every object the process holds: Django, the apps and libraries
loaded at startup are ~140,000 of them, and a collection came every few requests of a busy
page (the summary's p95 was its ~100 ms pauses). Objects made at startup live as long as the
process, so they are moved where the collector does not look (`gc.freeze`).
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Collect once, then put every object alive now out of the collector's sight. For a
    process that has finished starting; its later garbage is collected as before."""
    gc.collect()
    gc.freeze()
