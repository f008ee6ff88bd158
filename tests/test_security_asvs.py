"""The portal against OWASP ASVS 4.0.3 level 2, as a checklist (issue 12).

Each control that applies to this app is either a test in this module or a reference to the
test elsewhere that proves it (REFERENCES: the test below keeps every reference pointing at
a real test, so deleting or renaming one fails here). Run this file for the checklist's own
tests; the referenced ones run with their modules.

Chapters: V2 authentication, V3 sessions, V4 access control, V5 input, V6/V8 secrets and
data, V7 logging, V13/V14 configuration and headers, and the OAuth consent (V51 in ASVS 5).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from partner_portal.consent import flow
from tests.portal.settings_source import settings_variables
from tests.test_url_access import OBJECTS, PUBLIC, _walk

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def consent_settings(settings):
    settings.PUBLIC_BASE_URL = "https://portal.example"
    settings.MICROSOFT_LOGIN_BASE_URL = ""
    settings.MICROSOFT_CONSENT_BASE_URL = ""
    return settings


# (control, test module under tests/, test name): the test that proves the control.
REFERENCES = [
    # V2 Authentication
    (
        "V2.2.1 repeated failures lock the username out, even with the right password",
        "portal/test_signin",
        "test_repeated_failures_lock_the_account_out_even_with_the_right_password",
    ),
    (
        "V2.2.1 the lockout is per username and client address, not for everyone (L2)",
        "portal/test_signin",
        "test_a_lockout_is_per_username_and_address",
    ),
    (
        "V2.2.1 behind the proxy the lockout is per client, not per proxy (L2)",
        "portal/test_signin",
        "test_behind_the_proxy_a_lockout_is_per_username_and_client_not_the_proxy",
    ),
    (
        "V2.2.1 the locked-out page says for how long and links back (L2)",
        "portal/test_signin",
        "test_the_locked_out_page_says_for_how_long_and_links_back",
    ),
    # V4 Access control
    (
        "V4.1.1 every tenant-scoped URL needs sign-in",
        "test_url_access",
        "test_an_anonymous_visitor_is_sent_to_sign_in",
    ),
    (
        "V4.2.1 every tenant, link, incident and run URL is 404 for a signed-in stranger",
        "test_url_access",
        "test_a_signed_in_stranger_gets_404",
    ),
    (
        "V4.2.1 a new URL argument cannot escape the walk",
        "test_url_access",
        "test_every_url_argument_has_an_access_case",
    ),
    (
        "V4.1.3 staff see only their groups' tenants (the one access rule)",
        "portal/test_access",
        "test_staff_see_only_their_groups_tenants",
    ),
    (
        "V4.3.1 the Django admin is for superusers only, every admin URL walked (L1)",
        "test_url_access",
        "test_the_admin_is_for_superusers_only",
    ),
    (
        "V4.2.1 staff cannot attach another group's tenant ID, nor learn it exists (M2, L5)",
        "tenants/test_tenant_forms",
        "test_staff_cannot_attach_another_groups_tenant_id_nor_learn_it_exists",
    ),
    (
        "V4.2.1 staff cannot change a tenant ID by editing (M2)",
        "tenants/test_tenant_forms",
        "test_staff_cannot_change_a_tenant_id_by_editing",
    ),
    (
        "V4.2.1 a superuser's change of tenant ID confirms, then clears the old data (M2)",
        "tenants/test_tenant_forms",
        "test_a_superuser_changes_a_tenant_id_after_a_confirmation_that_clears_the_old_data",
    ),
    (
        "V4.2.1 a superuser is told which tenant has the ID; staff never (L5)",
        "tenants/test_tenant_forms",
        "test_a_superuser_sees_which_tenant_already_has_the_id",
    ),
    # OAuth admin consent (ASVS 5 V51 / RFC 6749 §10.12)
    (
        "V51 a domain expectation is enforced like a GUID: /organizations/ is a mismatch (M1)",
        "consent/test_consent_devcloud",
        "test_a_domain_link_refuses_a_consent_from_another_tenant_via_organizations",
    ),
    (
        "V51 a domain is resolved to its tenant ID when the link is created (M1)",
        "consent/test_consent_devcloud",
        "test_a_domain_typed_on_the_tenant_page_is_stored_as_its_tenant_id",
    ),
    (
        "V51 an unknown domain is refused at creation (AADSTS90002) (M1)",
        "consent/test_consent_devcloud",
        "test_an_unknown_domain_is_refused_when_the_link_is_created",
    ),
    (
        "V51 without an expectation nothing binds or syncs until staff confirm (M1)",
        "consent/test_callback",
        "test_without_an_expectation_nothing_is_bound_until_staff_confirm",
    ),
    (
        "V51 a confirmation cannot attach another customer's tenant (M1)",
        "consent/test_callback",
        "test_a_confirmation_cannot_attach_another_customers_tenant",
    ),
    (
        "V51 the state binds the authority the admin was sent to (M1)",
        "consent/test_callback",
        "test_a_state_is_bound_to_the_authority_the_admin_was_sent_to",
    ),
    (
        "V51 a consent from another tenant than expected attaches nothing",
        "consent/test_callback",
        "test_a_link_expecting_another_tenant_is_a_mismatch_and_attaches_nothing",
    ),
    (
        "V51 state forgery is rejected",
        "consent/test_state",
        "test_a_forged_state_is_rejected_and_changes_nothing",
    ),
    (
        "V51 a validly signed state with another nonce is rejected",
        "consent/test_state",
        "test_a_validly_signed_state_with_the_wrong_nonce_is_rejected",
    ),
    (
        "V51 a state cannot complete another link",
        "consent/test_state",
        "test_a_state_for_another_link_cannot_complete_this_one",
    ),
    (
        "V51 state replay is rejected",
        "consent/test_state",
        "test_a_replayed_state_is_rejected",
    ),
    (
        "V51 an expired state is rejected",
        "consent/test_state",
        "test_an_expired_state_is_rejected",
    ),
    (
        "V51 a token's tid, aud, exp and roles are checked",
        "microsoft/test_claims",
        "test_a_token_for_another_tenant_is_a_mismatch",
    ),
    # V5 Input
    (
        "V5.1.3 hostile callback parameters (NUL, huge, repeated) are a 400 that changes nothing",
        "consent/test_callback",
        "test_garbage_parameters_get_a_400_and_record_nothing_wrongly",
    ),
    (
        "V5.1.4 out-of-range dates are a form error, not a 500; invalid filters list nothing (L3)",
        "incidents/test_invalid_filters_fail_closed",
        "test_an_invalid_filter_lists_nothing_but_the_error",
    ),
    (
        "V5.1.4 invalid filters export nothing but the error (L3)",
        "incidents/test_invalid_filters_fail_closed",
        "test_an_invalid_filter_exports_nothing_but_the_error",
    ),
    (
        "V5.1.4 invalid filters count nothing new",
        "incidents/test_invalid_filters_fail_closed",
        "test_an_invalid_filter_counts_nothing_new",
    ),
    # V6 / V8 Secrets and data
    (
        "V8.3.4 no client secret or access token in logs, pages or the database",
        "consent/test_no_secrets_leak",
        "test_no_secret_or_token_in_logs_pages_or_database",
    ),
    (
        "V6.4.1 the token cache holds no token or secret in clear text",
        "microsoft/test_token_cache",
        "test_the_cache_holds_no_token_or_secret_in_clear_text",
    ),
    (
        "V6.2 consent link tokens are stored as a hash and shown once",
        "consent/test_links",
        "test_the_full_url_and_message_are_shown_once_at_creation",
    ),
    (
        "V6.2 a lost link is replaced, never shown again",
        "consent/test_links",
        "test_a_lost_link_is_replaced_by_a_new_one_shown_once",
    ),
    (
        "V14.1 Redis has a password that REDIS_URL carries and no argv shows",
        "portal/test_compose",
        "test_redis_requires_a_password_that_redis_url_carries_and_no_argv_shows",
    ),
    # V7 Logging
    (
        "V7.1 one function says the client address, for axes, the audit log and rate limits (L2)",
        "portal/test_signin",
        "test_one_function_says_the_client_address",
    ),
    (
        "V7.1 the audit log records the client behind the proxy (L2)",
        "portal/test_signin",
        "test_the_audit_log_records_the_client_behind_the_proxy",
    ),
    (
        "V7.1 / V11.1.4 rejected callbacks are counted per address, audited once a minute (L4)",
        "consent/test_callback_throttle",
        "test_a_flood_of_forged_callbacks_writes_one_audit_row_a_minute_per_address",
    ),
    # V14 Configuration
    (
        "V14.1 production settings pass check --deploy",
        "portal/test_settings",
        "test_production_values_pass_check_deploy_without_warnings",
    ),
    (
        "V14.1 production defaults are secure (DEBUG off, HTTPS, secure cookies, HSTS)",
        "portal/test_settings",
        "test_production_defaults_are_secure",
    ),
    (
        "V14.4.3 the strict CSP breaks no page in Chromium",
        "browser/test_csp",
        "test_no_page_violates_the_content_security_policy",
    ),
]


@pytest.mark.parametrize(
    ("control", "module", "name"), REFERENCES, ids=[control for control, _, _ in REFERENCES]
)
def test_each_control_has_its_test(control, module, name):
    found = importlib.import_module(f"tests.{module.replace('/', '.')}")
    assert callable(getattr(found, name, None)), f"{control}: tests/{module}.py::{name} is gone"


# --- V3 Sessions ---------------------------------------------------------------------------


def test_v3_3_1_sessions_end_after_12_idle_hours_and_every_request_renews_them(alice_client):
    assert settings.SESSION_COOKIE_AGE == 12 * 3600
    assert settings.SESSION_SAVE_EVERY_REQUEST is True
    response = alice_client.get(reverse("tenants:list"))
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert int(cookie["max-age"]) == 12 * 3600  # sliding: sent again with each request


def test_v3_4_session_and_csrf_cookies_are_httponly_samesite_and_secure_over_https():
    assert settings.SESSION_COOKIE_HTTPONLY is True
    assert settings.SESSION_COOKIE_SAMESITE == "Lax" and settings.CSRF_COOKIE_SAMESITE == "Lax"
    # Secure follows an https PUBLIC_BASE_URL: test_production_defaults_are_secure.


def test_v3_7_signing_out_is_a_post_that_ends_the_session(alice_client):
    assert alice_client.get(reverse("logout")).status_code == 405
    alice_client.post(reverse("logout"))
    assert "_auth_user_id" not in alice_client.session


# --- V4.2.2 CSRF on every POST ---------------------------------------------------------------


def _every_url(tenant, link) -> list[tuple[str, str]]:
    """(name, URL) of every named URL pattern, staff and public, filled with objects."""
    from django.urls import get_resolver

    urls = []
    for name, arguments, _ in _walk(get_resolver().url_patterns):
        if name is None:
            continue
        if "token" in arguments:
            kwargs = {"token": link.token}
        elif "rest" in arguments:  # consent:not_found, the branded 404 of unknown links
            kwargs = {"rest": "no-such-link"}
        else:
            kwargs = {argument: OBJECTS[argument](tenant) for argument in arguments}
        urls.append((name, reverse(name, kwargs=kwargs)))
    return urls


def test_v4_2_2_every_post_without_a_csrf_token_is_refused(alice, tenant_a, consent_settings):
    link = flow.create_link(tenant=tenant_a, created_by=alice)
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    urls = _every_url(tenant_a, link)
    assert {"consent:start", "consent:retry", "tenants:edit", "login", "logout"} <= {
        name for name, _ in urls
    }
    for name, url in urls:
        status = client.post(url, {"state": "x", "display_name": "x"}).status_code
        assert status == 403, (name, url, status)
    assert {name for name, _ in urls} >= PUBLIC  # the public consent pages are covered too


# --- V8.2.1 / V14.4 Headers ------------------------------------------------------------------


def _csp(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {
        part.split(" ", 1)[0]: part.split(" ", 1)[1] if " " in part else ""
        for part in (p.strip() for p in header.split(";"))
        if part
    }


def test_v14_4_every_page_sends_a_strict_csp_and_the_security_headers(
    client, alice, tenant_a, consent_settings
):
    link = flow.create_link(tenant=tenant_a, created_by=alice)
    anonymous = [reverse("login"), f"/consent/{link.token}/"]
    client.force_login(alice)
    signed_in = [
        "/",
        "/incidents/summary/",
        "/tenants/",
        f"/tenants/{tenant_a.pk}/",
        "/consent/links/",
    ]
    for url in signed_in:
        _check_headers(client.get(url), url)
    client.logout()
    for url in anonymous:
        _check_headers(client.get(url), url)


def _check_headers(response, url: str) -> None:
    assert response.status_code == 200, url
    policy = _csp(response)
    assert policy["default-src"] == "'self'" and policy["script-src"] == "'self'", url
    assert policy["style-src"] == "'self'" and policy["object-src"] == "'none'", url
    assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'", url
    assert "unsafe-inline" not in response["Content-Security-Policy"], url
    assert "unsafe-eval" not in response["Content-Security-Policy"], url
    assert response["X-Frame-Options"] == "DENY", url
    assert response["X-Content-Type-Options"] == "nosniff", url
    assert response["Referrer-Policy"] == "same-origin", url


def test_v14_4_the_consent_landing_page_may_post_only_to_itself_and_microsoft(
    client, alice, tenant_a, consent_settings
):
    link = flow.create_link(tenant=tenant_a, created_by=alice)
    policy = _csp(client.get(f"/consent/{link.token}/"))
    assert policy["form-action"] == "'self' https://login.microsoftonline.com"


def test_v8_2_1_every_signed_in_page_and_the_export_are_not_stored(
    alice_client, alice, tenant_a, consent_settings
):
    link = flow.create_link(tenant=tenant_a, created_by=alice)
    checked = 0
    for name, url in _every_url(tenant_a, link):
        response = alice_client.get(url)
        if response.status_code != 200:
            continue  # POST-only views (405), redirects
        assert "no-store" in response["Cache-Control"], (name, url)
        assert "private" in response["Cache-Control"], (name, url)
        checked += 1
    assert checked >= 8
    export = alice_client.get(reverse("incidents:export"))
    assert "no-store" in export["Cache-Control"]


def test_v13_templates_have_no_inline_script_style_or_event_handler():
    found = []
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        for pattern in (
            r"<script(?![^>]*\bsrc=)[^>]*>",
            r"\son[a-z]+\s*=",
            r"\sstyle\s*=",
            r"<style",
        ):
            found += [f"{template.relative_to(ROOT)}: {m}" for m in re.findall(pattern, text)]
    assert found == []


# --- README ----------------------------------------------------------------------------------

SECURITY_VARIABLES = {
    "DEBUG",
    "SECRET_KEY",
    "PUBLIC_BASE_URL",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "REDIS_URL",
    "MICROSOFT_CLIENT_SECRET",
    "MICROSOFT_CERTIFICATE_PATH",
    "MICROSOFT_PRIVATE_KEY_PATH",
    "TOKEN_CACHE_KEY",
    "CONSENT_LINK_MAX_AGE_DAYS",
    "CONSENT_STATE_MAX_AGE_SECONDS",
    "CONSENT_REJECTION_AUDIT_SECONDS",
    "REDIS_PASSWORD",
    "POSTGRES_PASSWORD",
}


def test_the_readme_production_section_lists_every_security_relevant_setting():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Security settings for production", 1)[1].split("\n## ", 1)[0]
    grouped = {
        name
        for name, group in settings_variables().items()
        if group in ("Security", "Auth and sign-in")
    }
    missing = sorted(name for name in grouped | SECURITY_VARIABLES if f"`{name}`" not in section)
    assert missing == []
