"""The per-tenant trigram index (0011) keyed only by the trigrams a search asks for.

A staff member's search asks for the trigrams inside runs of ASCII letters and digits
(filters.search_trigrams): never the ones pg_trgm pads at a word's ends ("  p", "ll "), nor
those with a non-ASCII letter (shown hashed, "0x1a2b3c"). Those were ~38% of the index's
keys, and each key is an entry of its own per tenant, which is what made every incident
written by the sync cost ~7 ms of PostgreSQL CPU a page in this index alone. A search finds
what it found before: every key it asks for is still there.

The new index is built beside the old one (CONCURRENTLY, so writes go on), then the old one
and its function are dropped.
"""

from django.db import migrations


def _trgm_schema(schema_editor) -> str:
    # pg_trgm's schema: an index expression must not depend on the search path.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE p.proname = 'show_trgm'"
        )
        return schema_editor.connection.ops.quote_name(cursor.fetchone()[0])


def _function(schema_editor, name: str, trigrams: str) -> None:
    schema_editor.execute(
        f"CREATE OR REPLACE FUNCTION {name}(tenant bigint, body text) "
        # COST: evaluating it per row (a filter, not the index) is costly; said so, the
        # planner reads the index instead, even for a term that few incidents contain.
        "RETURNS text[] LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE COST 10000 "
        f"RETURN ARRAY(SELECT tenant::text || ':' || t FROM {trigrams})"
    )


def _index(schema_editor, name: str, function: str) -> None:
    # fastupdate off: GIN's pending list of new entries is read whole by every index scan,
    # and a staff member's search is one scan per tenant: with the sync writing, up to 4 MB
    # read 50 times, 4 ms each (a search of 50 tenants took 230 ms instead of 30). Writing
    # entries straight into the index costs the sync ~10% more on this index.
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON incidents_incident "
        f"USING gin ({function}(tenant_id, search_text)) WITH (fastupdate = off)"
    )


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema = _trgm_schema(schema_editor)
    # Three bytes and no space: ASCII letters and digits inside a word.
    inside_words = (
        f"unnest({schema}.show_trgm(body)) t WHERE octet_length(t) = 3 AND strpos(t, ' ') = 0"
    )
    _function(schema_editor, "incident_search_word_keys", inside_words)
    _index(schema_editor, "incident_search_tenant_words", "incident_search_word_keys")
    schema_editor.execute("DROP INDEX CONCURRENTLY IF EXISTS incident_search_tenant_trgm")
    schema_editor.execute("DROP FUNCTION IF EXISTS incident_search_keys(bigint, text)")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema = _trgm_schema(schema_editor)
    _function(schema_editor, "incident_search_keys", f"unnest({schema}.show_trgm(body)) t")
    _index(schema_editor, "incident_search_tenant_trgm", "incident_search_keys")
    schema_editor.execute("DROP INDEX CONCURRENTLY IF EXISTS incident_search_tenant_words")
    schema_editor.execute("DROP FUNCTION IF EXISTS incident_search_word_keys(bigint, text)")


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction.
    atomic = False

    dependencies = [("incidents", "0013_alert_content_hash")]

    operations = [migrations.RunPython(forwards, backwards, atomic=False, elidable=False)]
