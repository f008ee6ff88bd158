"""JSON text of what we received and store, made with orjson where it can.

Encoding is a fifth of a sync run's Python CPU (the page's one JSON document and each
alert's digest), and orjson encodes several times faster than the standard library. It
refuses some of what Microsoft may send, though: integers beyond 64 bits, lone surrogates,
keys that are not strings. Those documents are encoded by `json`, to the same JSON data.
NaN and ±Infinity (not JSON, though `json.loads` reads them) are written as null, as orjson
writes them: PostgreSQL's jsonb would refuse the incident for them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """`value` as compact UTF-8 JSON text; keys in their order, non-ASCII as it is.
    `default`: as json.dumps takes it, for what JSON has no type for."""
    try:
        return orjson.dumps(value, default=default)
    except TypeError:  # orjson.JSONEncodeError is one
        text = json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), check_circular=False, default=default
        )
        return text.encode("utf-8", "surrogatepass")
