"""json_text.dumps: the same JSON data as the standard library, whichever encoder wrote it."""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st

from partner_portal import json_text

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: orjson refuses those, json writes them
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()  # lone surrogates too
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(VALUES)
def test_any_json_value_reads_back_as_itself(value):
    text = json_text.dumps(value).decode("utf-8", "surrogatepass")
    assert json.loads(text) == value


def test_keys_keep_their_order_and_non_ascii_is_written_as_it_is():
    assert (
        json_text.dumps({"b": "é", "a": [1, 2**70]})
        == '{"b":"é","a":[1,1180591620717411303424]}'.encode()
    )


def test_nan_and_infinity_become_null_and_default_handles_other_types():
    assert json.loads(json_text.dumps([math.nan, -math.inf])) == [None, None]
    assert json_text.dumps({"at": object}, default=lambda o: "x") == b'{"at":"x"}'
