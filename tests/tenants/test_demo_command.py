"""`manage.py demo` after a restart: devcloud forgot every consent (it keeps them in memory),
Microsoft would not have; the demo grants again those the portal recorded."""

from __future__ import annotations

import socket
import uuid

import pytest

from partner_portal.demo import devcloud_control
from partner_portal.tenants.management.commands.demo import (
    DEMO_MSP_TENANT,
    Command,
    _consented_tenant_ids,
)
from partner_portal.tenants.models import Tenant
from tests.factories import ConsentedTenantFactory, TenantFactory

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def test_the_tenants_whose_consent_the_portal_recorded_are_listed():
    consented = ConsentedTenantFactory()
    pending = ConsentedTenantFactory(consent_state=Tenant.ConsentState.PENDING)
    ConsentedTenantFactory(consent_state=Tenant.ConsentState.REVOKED)
    TenantFactory()  # never consented, no tenant ID
    assert sorted(_consented_tenant_ids()) == sorted(
        [str(consented.entra_tenant_id), str(pending.entra_tenant_id)]
    )


def test_registering_the_demo_app_grants_the_recorded_consents_again(devcloud):
    contoso = devcloud.create_tenant(domain="contoso.onmicrosoft.com", display_name="Contoso")
    fabrikam = devcloud.create_tenant(domain="fabrikam.onmicrosoft.com", display_name="Fabrikam")
    client_id = str(uuid.uuid4())
    devcloud_control.register_app(
        base_url=devcloud.base_url,
        ca_file=devcloud.ca_file,
        client_id=client_id,
        display_name="Partner Portal (demo)",
        secret="a-secret-for-this-test-only",
        redirect_uris=["http://127.0.0.1:8000/consent/callback/"],
        required_permissions=["Incident.Read.All"],
        # A tenant devcloud no longer knows (made through its control API) is skipped.
        consented_tenants=[contoso["tenant_id"], str(uuid.uuid4())],
    )
    assert devcloud.app(client_id)["display_name"] == "Partner Portal (demo)"
    granted = devcloud.consent(contoso["tenant_id"], client_id)
    assert granted["state"] == "consented"
    assert granted["roles"] == ["Incident.Read.All"]
    assert devcloud.consent(fabrikam["tenant_id"], client_id)["state"] == "none"


def test_a_devcloud_that_does_not_answer_is_a_control_error_without_the_secret(devcloud):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # nothing listens once the socket is closed
    with pytest.raises(devcloud_control.ControlError, match="did not answer POST /apps") as exc:
        devcloud_control.register_app(
            base_url=f"https://127.0.0.1:{closed_port}",
            ca_file=devcloud.ca_file,
            client_id=str(uuid.uuid4()),
            display_name="Partner Portal (demo)",
            secret="a-secret-for-this-test-only",
            redirect_uris=[],
            required_permissions=["Incident.Read.All"],
            consented_tenants=[],
        )
    assert "a-secret-for-this-test-only" not in str(exc.value)


def test_registering_the_demo_app_adds_a_technician_in_the_msp_tenant(devcloud):
    client_id = str(uuid.uuid4())
    devcloud_control.register_app(
        base_url=devcloud.base_url,
        ca_file=devcloud.ca_file,
        client_id=client_id,
        display_name="Partner Portal (demo)",
        secret="a-secret-for-this-test-only",
        redirect_uris=["http://127.0.0.1:8000/login/entra/callback/"],
        required_permissions=["Incident.Read.All"],
        consented_tenants=[],
        msp_tenant=DEMO_MSP_TENANT,
    )
    [technician] = devcloud.users(DEMO_MSP_TENANT)
    assert technician["user_principal_name"] == "technician@msp-demo.onmicrosoft.com"
    assert technician["app_roles"] == {client_id: ["Portal.Technician"]}


@pytest.mark.parametrize(
    "line",
    [
        "devcloud ready",
        "devcloud ready {not json",
        'devcloud ready ["base_url"]',
        'devcloud ready {"ca_file": "/x"}',
        "devcloud ready \udcff\x00",
        'devcloud tenant=6f1c domain=contoso.onmicrosoft.com display_name={"base_url": 1}',
    ],
)
def test_a_line_that_is_not_a_ready_line_gives_no_facts(line):
    assert devcloud_control.ready_facts(line) is None


def test_the_ready_line_gives_devclouds_facts():
    line = 'devcloud ready {"base_url": "https://127.0.0.1:1", "ca_file": "/s/ca.pem"}'
    assert devcloud_control.ready_facts(line) == {
        "base_url": "https://127.0.0.1:1",
        "ca_file": "/s/ca.pem",
    }


class _Recorder:
    def __init__(self) -> None:
        self.started: dict[str, list[str]] = {}

    def start(self, name: str, command: list[str], **kwargs: object) -> None:
        self.started[name] = command


@pytest.mark.parametrize(("verbose", "level"), [(False, "WARNING"), (True, "INFO")])
def test_the_worker_and_beat_log_warnings_only_unless_verbose(verbose, level):
    command = Command()
    command.child_log_level = "INFO" if verbose else "WARNING"
    recorder = _Recorder()
    command._start_portal(recorder, {}, 8000, 2)
    for name in ("worker", "beat"):
        args = recorder.started[name]
        assert args[args.index("--loglevel") + 1] == level


def test_the_demo_has_a_verbose_switch():
    parser = Command().create_parser("manage.py", "demo")
    assert parser.parse_args(["--verbose"]).verbose
    assert not parser.parse_args([]).verbose
