"""The shared token cache: encrypted at rest, keyed per tenant, expiring with the token."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import responses
from django.core.cache import cache

from partner_portal.microsoft import errors, tokens
from tests.microsoft.fake_entra import DISCOVERY, TENANT, TOKEN_URL, discovery, discovery_url

ACCESS_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.eyJzZWNyZXQiOiJ5ZXMifQ."


@pytest.fixture
def login(fake_login):
    fake_login.post(
        TOKEN_URL,
        json={"token_type": "Bearer", "expires_in": 3599, "access_token": ACCESS_TOKEN},
    )
    return fake_login


def stored_blob() -> bytes:
    return cache.get(tokens._cache_name(tokens.config(), "commercial", TENANT))


def token_calls(mock) -> int:
    return sum(1 for c in mock.calls if c.request.url == TOKEN_URL)


def test_the_second_call_is_served_from_the_cache(login):
    assert tokens.get_access_token(tenant_id=TENANT) == ACCESS_TOKEN
    assert tokens.get_access_token(tenant_id=TENANT) == ACCESS_TOKEN
    assert token_calls(login) == 1


def test_a_new_process_reuses_the_token_another_one_cached(login):
    tokens.get_access_token(tenant_id=TENANT)
    tokens.forget_all()  # what another process looks like: no app, only the shared cache
    assert tokens.get_access_token(tenant_id=TENANT) == ACCESS_TOKEN
    assert token_calls(login) == 1


def test_the_cache_holds_no_token_or_secret_in_clear_text(login):
    tokens.get_access_token(tenant_id=TENANT)
    blob = stored_blob()
    assert blob
    assert ACCESS_TOKEN.encode() not in blob
    assert b"s3cret" not in blob and b"AccessToken" not in blob


def test_another_key_cannot_read_the_cache_and_falls_back_to_a_new_token(login, settings):
    tokens.get_access_token(tenant_id=TENANT)
    settings.TOKEN_CACHE_KEY = "a-rotated-key"
    tokens.forget_all()
    assert tokens.get_access_token(tenant_id=TENANT) == ACCESS_TOKEN
    assert token_calls(login) == 2


def test_the_cache_entry_expires_with_the_token():
    now = int(time.time())
    state = json.dumps({"AccessToken": {"a": {"expires_on": str(now + 1000)}}})
    assert 995 <= tokens._token_ttl(state) <= 1000
    assert tokens._token_ttl(json.dumps({"AccessToken": {}})) == 0
    assert tokens._token_ttl("not json") == 0


def test_the_key_is_derived_from_token_cache_key_or_secret_key(settings):
    settings.TOKEN_CACHE_KEY = ""
    from_secret = tokens._fernet(tokens.config()).encrypt(b"x")
    settings.TOKEN_CACHE_KEY = "separate"
    with pytest.raises(Exception):  # noqa: B017 - InvalidToken: another key
        tokens._fernet(tokens.config()).decrypt(from_secret)


def test_the_cache_is_keyed_per_tenant_and_client(settings):
    cfg = tokens.config()
    other = str(uuid.uuid4())
    assert tokens._cache_name(cfg, "commercial", TENANT) != tokens._cache_name(
        cfg, "commercial", other
    )
    settings.MICROSOFT_CLIENT_ID = "another-client"
    assert tokens._cache_name(tokens.config(), "commercial", TENANT) != tokens._cache_name(
        cfg, "commercial", TENANT
    )


def discoveries(mock) -> int:
    return sum(1 for c in mock.calls if "openid-configuration" in c.request.url)


def test_a_cached_token_is_served_without_an_msal_app(login):
    tokens.get_access_token(tenant_id=TENANT)
    tokens.forget_all()  # another process, or this one's apps evicted
    assert tokens.get_access_token(tenant_id=TENANT) == ACCESS_TOKEN
    assert tokens._apps == {}
    assert (discoveries(login), token_calls(login)) == (1, 1)


def test_a_new_app_reads_the_tenants_discovery_document_from_the_shared_cache(login):
    tokens.get_access_token(tenant_id=TENANT)
    assert discoveries(login) == 1
    tokens.forget_all()  # another process
    tokens.forget_tenant(tenant_id=TENANT, drop_cached_tokens=True)  # a token is due
    assert tokens.get_access_token(tenant_id=TENANT) == ACCESS_TOKEN
    assert len(tokens._apps) == 1  # built to ask for the token…
    assert (discoveries(login), token_calls(login)) == (1, 2)  # …without asking Entra again


def test_a_failed_discovery_is_not_kept(login):
    login.replace(responses.GET, discovery_url(TENANT), status=503)
    with pytest.raises(errors.Transient):
        tokens.get_access_token(tenant_id=TENANT)
    login.replace(responses.GET, discovery_url(TENANT), json=DISCOVERY)
    assert tokens.get_access_token(tenant_id=TENANT) == ACCESS_TOKEN
    assert discoveries(login) == 2


def test_the_apps_kept_per_process_are_bounded_least_recently_used_first(login, monkeypatch):
    monkeypatch.setattr(tokens, "APPS_PER_PROCESS", 2)
    cfg = tokens.config()
    first, second, third = TENANT, str(uuid.uuid4()), str(uuid.uuid4())
    for tenant in (second, third):
        login.get(discovery_url(tenant), json=discovery(tenant))
    for tenant in (first, second):
        tokens._get_entry(cfg, "commercial", tenant)
    tokens._get_entry(cfg, "commercial", first)  # used again: the newest now
    tokens._get_entry(cfg, "commercial", third)
    assert [key[1] for key in tokens._apps] == [first, third]


def test_forgetting_a_tenant_keeps_its_shared_token_unless_asked_to_drop_it(login):
    tokens.get_access_token(tenant_id=TENANT)
    tokens.forget_tenant(tenant_id=TENANT)
    tokens.get_access_token(tenant_id=TENANT)
    assert token_calls(login) == 1  # a new app, the same shared token
    other = tokens._cache_name(tokens.config(), "commercial", str(uuid.uuid4()))
    cache.set(other, b"another tenant's entry")

    tokens.forget_tenant(tenant_id=TENANT.upper(), drop_cached_tokens=True)
    assert stored_blob() is None
    assert tokens._apps == {}
    assert cache.get(other) == b"another tenant's entry"
    assert tokens.get_access_token(tenant_id=TENANT) == ACCESS_TOKEN
    assert token_calls(login) == 2
    assert stored_blob()  # the new token is shared again
