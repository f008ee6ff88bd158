"""The per-tenant search index's keys (migration 0014) hold every key a search asks for."""

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partner_portal.incidents.filters import search_trigrams

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the per-tenant trigram index"
)

# Words as incidents hold them: letters (some not ASCII), digits, and what splits words.
text = st.text(alphabet=st.sampled_from("abcxyz0129üßé-._@ '\"\\%"), max_size=40)


@given(before=text, term=text, after=text)
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_a_text_has_every_key_of_any_term_it_contains(db, before, term, after):
    body = f"{before}{term}{after}".lower()
    wanted = [f"42:{trigram}" for trigram in search_trigrams(term.lower())]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT incident_search_word_keys(42, %s) @> %s::text[], "
            "incident_search_word_keys(42, %s)",
            [body, wanted, body],
        )
        has_all, keys = cursor.fetchone()
    assert has_all
    # No key of a trigram a search never asks for: those pg_trgm pads at a word's ends.
    assert not [key for key in keys if " " in key]
    assert set(keys) >= {f"42:{trigram}" for trigram in search_trigrams(body)}


def test_the_keys_leave_out_padded_and_non_ascii_trigrams(db):
    body = "ab müller x1y2 powershell"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT incident_search_word_keys(7, %s), cardinality(show_trgm(%s))", [body, body]
        )
        keys, trigrams = cursor.fetchone()
    wanted = {f"7:{t}" for t in ["lle", "ler", "x1y", "1y2", "pow", "owe", "wer", "ers"]}
    wanted |= {f"7:{t}" for t in ["rsh", "she", "hel", "ell"]}
    # Besides these, at most the two trigrams with "ü" (pg_trgm hashes them: one shows as
    # three printable bytes); of the 26 trigrams, the 11 padded ones are gone.
    assert wanted <= set(keys) and len(keys) <= len(wanted) + 2
    assert trigrams == 26


def test_the_index_has_no_pending_list_for_searches_to_read(db):
    # A staff member's search scans the index once per tenant; a pending list would be
    # read whole by each of those scans.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reloptions FROM pg_class WHERE relname = 'incident_search_tenant_words'"
        )
        assert cursor.fetchone() == (["fastupdate=off"],)
