"""Working incidents against devcloud: each action round-trips (devcloud's ground truth
shows it, the next sync keeps it), a change made in Microsoft meanwhile is a conflict,
refusals are explained, and only staff with the permission may act."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from partner_portal.audit.models import AuditEvent
from partner_portal.incidents import actions, sync
from partner_portal.incidents.models import Incident, IncidentActionJob
from partner_portal.microsoft.client import READWRITE_ROLE
from tests.factories import ConsentedTenantFactory, GroupFactory, UserFactory
from tests.incidents.helpers import assert_counts_exact, assert_db_matches, make_tenant, tid

pytestmark = pytest.mark.integration


def writable_tenant(devcloud, app, *, count=5, groups=(), roles=(READWRITE_ROLE,)):
    """A consented tenant whose token carries `roles` in devcloud, synced once."""
    tenant = make_tenant(devcloud, app, count=count, granted_roles=[READWRITE_ROLE])
    devcloud.set_consent(tid(tenant), app["client_id"], roles=list(roles))
    tenant.groups.set(groups)
    sync.sync_tenant(tenant=tenant)
    return tenant


def actor(*groups, may_act=True):
    group = GroupFactory()
    if may_act:
        group.permissions.add(Permission.objects.get(codename="act_on_incident"))
    return UserFactory(groups=[group, *groups], email="tech@msp.example")


@pytest.fixture
def updates_on(settings, portal, db):
    settings.MICROSOFT_INCIDENT_UPDATES = True
    return portal


def truth(devcloud, incident) -> dict:
    found = [
        i
        for i in devcloud.incidents(tid(incident.tenant))
        if i["incidentId"] == incident.microsoft_id
    ]
    return found[0]


def do(incident, user, action, *, confirm=False, expected="loaded", **values):
    incident.refresh_from_db()
    return actions.act(
        incident=incident,
        user=user,
        action=action,
        values=actions.clean_values(action, values) if action != "raw" else values,
        expected=incident.last_update_time if expected == "loaded" else expected,
        confirm=confirm,
    )


def test_each_action_round_trips_and_the_next_sync_keeps_it(devcloud, updates_on):
    tenant = writable_tenant(devcloud, updates_on)
    user = actor()
    incident = Incident.objects.filter(tenant=tenant, redirect_incident_id=None).first()

    assert do(incident, user, "assign", assigned_to="tech@msp.example").outcome == "done"
    assert truth(devcloud, incident)["assignedTo"] == "tech@msp.example"
    assert do(incident, user, "status", status="InProgress").outcome == "done"
    assert truth(devcloud, incident)["status"] == "InProgress"
    result = do(incident, user, "classify", pair="TruePositive:Phishing")
    assert result.outcome == "done", result.message
    assert (
        truth(devcloud, incident)["classification"],
        truth(devcloud, incident)["determination"],
    ) == (
        "TruePositive",
        "Phishing",
    )
    assert do(incident, user, "tags", add="Case 42, vip").outcome == "done"
    assert do(incident, user, "tags", remove="vip").outcome == "done"
    assert "Case 42" in truth(devcloud, incident)["tags"]
    assert "vip" not in truth(devcloud, incident)["tags"]
    assert do(incident, user, "comment", comment="Called the customer").outcome == "done"
    comment = truth(devcloud, incident)["comments"][-1]
    assert comment["comment"] == "Called the customer"
    assert comment["createdBy"] and comment["createdTime"]
    assert do(incident, user, "status", status="Resolved").outcome == "done"
    assert do(incident, user, "unassign").outcome == "done"

    # The row is Microsoft's answer, and the next sync leaves it as devcloud has it.
    incident.refresh_from_db()
    want = truth(devcloud, incident)
    assert incident.status == want["status"] == "Resolved"
    assert incident.comments == want["comments"]
    assert incident.last_update_time.isoformat()[:19] == want["lastUpdateTime"][:19]
    sync.sync_tenant(tenant=tenant)
    assert_db_matches(devcloud, tenant)
    assert_counts_exact()
    incident.refresh_from_db()
    assert (incident.status, incident.classification, incident.determination) == (
        "Resolved",
        "TruePositive",
        "Phishing",
    )
    # Every action is an audit event with before → after and the outcome.
    events = AuditEvent.objects.filter(target=f"incident:{incident.pk}").order_by("created_at")
    assert [e.action for e in events] == [
        "incident.assign",
        "incident.status",
        "incident.classify",
        "incident.tags",
        "incident.tags",
        "incident.comment",
        "incident.status",
        "incident.unassign",
    ]
    first = events[0]
    assert first.actor == user and first.tenant == tenant
    assert first.data["outcome"] == "done"
    assert first.data["after"]["assigned_to"] == "tech@msp.example"


def test_a_change_in_microsoft_after_loading_is_shown_and_needs_a_confirmation(
    devcloud, updates_on
):
    tenant = writable_tenant(devcloud, updates_on)
    user = actor()
    incident = Incident.objects.filter(tenant=tenant, redirect_incident_id=None).first()
    loaded, was = incident.last_update_time, incident.assigned_to or "—"
    # Someone else, in Microsoft's portal, between our page load and the submit.
    tenant.incident_client().update_incident(
        incident.microsoft_id, assignedTo="other@customer.example"
    )

    result = do(incident, user, "status", status="Resolved", expected=loaded)
    assert result.outcome == "conflict"
    assert ("Assigned to", was, "other@customer.example") in result.changed
    assert truth(devcloud, incident)["status"] == incident.status  # nothing written
    incident.refresh_from_db()
    assert incident.assigned_to == "other@customer.example"  # the page now shows it

    confirmed = do(incident, user, "status", status="Resolved", expected=loaded, confirm=True)
    assert confirmed.outcome == "done"
    assert truth(devcloud, incident)["status"] == "Resolved"
    assert truth(devcloud, incident)["assignedTo"] == "other@customer.example"


def _list_boxes(client) -> dict[int, str]:
    """The list page's checkboxes as loaded: {pk: the value the box submits}."""
    html = client.get(reverse("incidents:list")).content.decode()
    values = re.findall(r'name="incident" value="([^"]+)"', html)
    return {int(v.partition("@")[0]): v for v in values}


def test_a_bulk_action_compares_with_the_list_as_loaded_and_the_user_confirms(
    client, devcloud, updates_on
):
    """Changed in Microsoft between the list's load and the submit, and already stored by a
    sync before the submit: still a conflict, which the job page lets the user confirm."""
    team = GroupFactory()
    tenant = writable_tenant(devcloud, updates_on, groups=[team])
    client.force_login(actor(team))
    live = Incident.objects.filter(tenant=tenant, redirect_incident_id=None).exclude(
        status="Resolved"
    )
    changed, untouched = live[0], live[1]
    boxes = _list_boxes(client)
    tenant.incident_client().update_incident(
        changed.microsoft_id, assignedTo="other@customer.example"
    )
    sync.sync_tenant(tenant=tenant)  # the portal's row has the change before the submit
    response = client.post(
        reverse("incidents:bulk_act"),
        {
            "action": "status",
            "status": "Resolved",
            "incident": [boxes[changed.pk], boxes[untouched.pk]],
        },
    )
    job = IncidentActionJob.objects.get()
    assert response.url == reverse("incidents:action_job", kwargs={"job_id": job.pk})
    assert actions.run_job(job=job) is None
    outcome = {i.incident_id: i for i in job.items.all()}
    assert outcome[untouched.pk].outcome == "done"
    assert outcome[changed.pk].outcome == "conflict"
    assert "since you loaded it" in outcome[changed.pk].message
    # The sync stored the change before the submit: the job says what the incident is now.
    assert "It now reads:" in outcome[changed.pk].message
    assert "Assigned to: other@customer.example" in outcome[changed.pk].message
    assert truth(devcloud, changed)["status"] != "Resolved"  # nothing written
    assert truth(devcloud, untouched)["status"] == "Resolved"

    page = client.get(reverse("incidents:action_job", kwargs={"job_id": job.pk})).content.decode()
    form = page[page.index("data-confirm-conflicts") :]
    shown = re.findall(r'name="incident" value="([^"]+)"', form)
    assert [int(v.partition("@")[0]) for v in shown] == [changed.pk]
    again = client.post(
        reverse("incidents:confirm_job", kwargs={"job_id": job.pk}), {"incident": shown}
    )
    second = IncidentActionJob.objects.exclude(pk=job.pk).get()
    assert again.url == reverse("incidents:action_job", kwargs={"job_id": second.pk})
    assert actions.run_job(job=second) is None
    assert list(second.items.values_list("incident_id", "outcome")) == [(changed.pk, "done")]
    want = truth(devcloud, changed)
    assert (want["status"], want["assignedTo"]) == ("Resolved", "other@customer.example")


def _merge(devcloud, tenant, source, target):
    devcloud.merge_incident(tid(tenant), source.microsoft_id, target.microsoft_id)


def test_an_action_on_a_merged_incident_is_made_on_the_one_it_was_merged_into(
    client, devcloud, updates_on
):
    team = GroupFactory()
    tenant = writable_tenant(devcloud, updates_on, groups=[team])
    user = actor(team)
    client.force_login(user)
    merged, target, other, other_target = Incident.objects.filter(
        tenant=tenant, redirect_incident_id=None
    )[:4]
    _merge(devcloud, tenant, merged, target)  # in Microsoft, after the page was loaded
    url = reverse("incidents:act", kwargs={"incident_id": merged.pk})
    form = {"action": "status", "status": "Resolved"}
    loaded = merged.last_update_time.isoformat()

    response = client.post(url, {**form, "expected": loaded}, follow=True)
    # The user lands on the incident that was changed, told why.
    assert response.redirect_chain[-1][0] == reverse(
        "incidents:detail", kwargs={"incident_id": target.pk}
    )
    html = response.content.decode()
    assert (
        f"Microsoft merged incident {merged.microsoft_id} into incident {target.microsoft_id}"
        in html
    )
    assert truth(devcloud, target)["status"] == "Resolved"
    assert truth(devcloud, merged)["status"] == "Redirected"
    merged.refresh_from_db()
    assert (merged.status, merged.redirect_incident_id) == ("Redirected", target.microsoft_id)
    target.refresh_from_db()
    assert target.status == "Resolved"
    event = AuditEvent.objects.get(target=f"incident:{target.pk}")
    assert event.data["merged_from"] == [merged.microsoft_id]
    assert event.data["outcome"] == "done" and event.data["after"]["status"] == "Resolved"

    # The htmx answer links to it; and when Microsoft answers 404 for an incident the portal
    # already knows was merged, the stored pointer is followed.
    _merge(devcloud, tenant, other, other_target)
    sync.sync_tenant(tenant=tenant)
    devcloud.add_fault(
        endpoint="get_incident", tenant=tid(tenant), kind="status", status=404, count=1
    )
    answer = client.post(
        reverse("incidents:act", kwargs={"incident_id": other.pk}),
        {"action": "comment", "comment": "Seen"},
        headers={"HX-Request": "true"},
    ).content.decode()
    assert 'data-outcome="done"' in answer
    link = reverse("incidents:detail", kwargs={"incident_id": other_target.pk})
    assert f'href="{link}" data-merged-into' in answer
    assert truth(devcloud, other_target)["comments"][-1]["comment"] == "Seen"


def test_a_bulk_action_follows_merges_once_per_incident(devcloud, updates_on):
    tenant = writable_tenant(devcloud, updates_on, count=8)
    a, b, c, d, e = Incident.objects.filter(tenant=tenant, redirect_incident_id=None)[:5]
    # Merged before the list was loaded: d is in the job, so it is changed once, as itself.
    _merge(devcloud, tenant, c, d)
    sync.sync_tenant(tenant=tenant)
    for row in (c, d):
        row.refresh_from_db()
    job = actions.create_job(
        user=actor(),
        action="tags",
        values={"add": ["case-7"], "remove": []},
        incidents=[a, c, d, e],
    )
    # Merged after the list was loaded: b is not in the job, the change goes to b.
    _merge(devcloud, tenant, a, b)
    assert actions.run_job(job=job) is None
    items = {i.incident_id: i for i in job.items.all()}
    assert {pk: i.outcome for pk, i in items.items()} == dict.fromkeys(
        (a.pk, c.pk, d.pk, e.pk), "done"
    )
    assert "the change was made there" in items[a.pk].message
    assert "which this job updates as well" in items[c.pk].message
    for incident in (b, d, e):
        assert truth(devcloud, incident)["tags"].count("case-7") == 1
    for incident in (a, c):
        assert "case-7" not in truth(devcloud, incident)["tags"]


def test_microsofts_refusals_are_explained_in_plain_words(devcloud, updates_on):
    tenant = writable_tenant(devcloud, updates_on)
    user = actor()
    incident = Incident.objects.filter(tenant=tenant, redirect_incident_id=None).first()
    before = truth(devcloud, incident)
    # 400: a pair Microsoft refuses (the portal's own form never offers it).
    bad = actions.act(
        incident=incident,
        user=user,
        action="classify",
        values={"classification": "FalsePositive", "determination": "Malware"},
        expected=None,
    )
    assert bad.outcome == "refused"
    assert "Microsoft refused the change as invalid" in bad.message
    assert "not valid for the classification" in bad.message
    # 403: the token lacks Incident.ReadWrite.All although the portal believed otherwise.
    devcloud.set_consent(tid(tenant), updates_on["client_id"], roles=["Incident.Read.All"])
    from partner_portal.microsoft import tokens

    tokens.forget_tenant(tenant_id=tid(tenant), cloud=tenant.cloud, drop_cached_tokens=True)
    refused = do(incident, user, "status", status="Resolved")
    assert refused.outcome == "refused"
    assert READWRITE_ROLE in refused.message and "consent link" in refused.message
    assert truth(devcloud, incident) == before
    event = AuditEvent.objects.filter(target=f"incident:{incident.pk}").first()
    assert event.data["outcome"] == "refused" and event.data["error"]


def test_a_read_only_tenant_gets_the_explanation_not_an_error(client, devcloud, updates_on):
    team = GroupFactory()
    tenant = writable_tenant(devcloud, updates_on, groups=[team], roles=["Incident.Read.All"])
    tenant.granted_roles = ["Incident.Read.All"]
    tenant.save()
    incident = Incident.objects.filter(tenant=tenant, redirect_incident_id=None).first()
    before = truth(devcloud, incident)
    client.force_login(actor(team))

    page = client.get(reverse("incidents:detail", kwargs={"incident_id": incident.pk}))
    assert page.status_code == 200
    html = page.content.decode()
    assert "lacks Incident.ReadWrite.All" in html and "Create a new consent link" in html
    assert 'data-action="status"' not in html
    response = client.post(
        reverse("incidents:act", kwargs={"incident_id": incident.pk}),
        {"action": "status", "status": "Resolved"},
        follow=True,
    )
    assert response.status_code == 200
    assert "lacks Incident.ReadWrite.All" in response.content.decode()
    assert truth(devcloud, incident) == before
    tenant_page = client.get(reverse("tenants:detail", kwargs={"tenant_pk": tenant.pk}))
    assert "lacks Incident.ReadWrite.All" in tenant_page.content.decode()


def test_an_action_from_the_page_answers_htmx_with_the_new_values(client, devcloud, updates_on):
    team = GroupFactory()
    tenant = writable_tenant(devcloud, updates_on, groups=[team])
    incident = Incident.objects.filter(tenant=tenant, redirect_incident_id=None).first()
    client.force_login(actor(team))
    page = client.get(reverse("incidents:detail", kwargs={"incident_id": incident.pk}))
    assert 'data-action="assign-me"' in page.content.decode()
    response = client.post(
        reverse("incidents:act", kwargs={"incident_id": incident.pk}),
        {
            "action": "assign",
            "assigned_to": "tech@msp.example",
            "expected": incident.last_update_time.isoformat(),
        },
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith("<section")  # the partial, not the page
    assert 'data-outcome="done"' in html
    assert '<dd data-field="assigned_to">tech@msp.example</dd>' in html
    assert "History" in html and "Assign to tech@msp.example" in html
    # The incident card at the top of the page is swapped too, with the new assignee.
    card = html[html.index('<section id="incident-fields"') :]
    assert 'hx-swap-oob="true"' in card.split(">", 1)[0]
    assert "<dt>Assigned to</dt><dd>tech@msp.example</dd>" in card


def test_staff_without_the_permission_see_no_controls_and_get_403(client, devcloud, updates_on):
    team = GroupFactory()
    tenant = writable_tenant(devcloud, updates_on, groups=[team])
    incident = Incident.objects.filter(tenant=tenant, redirect_incident_id=None).first()
    before = truth(devcloud, incident)
    client.force_login(actor(team, may_act=False))
    page = client.get(reverse("incidents:detail", kwargs={"incident_id": incident.pk}))
    assert "data-action=" not in page.content.decode()
    listing = client.get(reverse("incidents:list"))
    assert 'id="bulk-form"' not in listing.content.decode()
    act = client.post(
        reverse("incidents:act", kwargs={"incident_id": incident.pk}),
        {"action": "status", "status": "Resolved"},
    )
    bulk = client.post(
        reverse("incidents:bulk_act"),
        {"action": "status", "status": "Resolved", "incident": incident.pk},
    )
    # Someone else's job with a conflict: seeing it is allowed, confirming it is not.
    job = actions.create_job(
        user=actor(team), action="status", values={"status": "Resolved"}, incidents=[incident]
    )
    job.items.update(outcome="conflict")
    confirm = client.post(
        reverse("incidents:confirm_job", kwargs={"job_id": job.pk}),
        {"incident": f"{incident.pk}@{incident.last_update_time.isoformat()}"},
    )
    assert (act.status_code, bulk.status_code, confirm.status_code) == (403, 403, 403)
    assert IncidentActionJob.objects.count() == 1
    assert truth(devcloud, incident) == before
    assert not AuditEvent.objects.filter(target=f"incident:{incident.pk}").exists()


def test_a_bulk_action_on_120_incidents_in_3_tenants_never_earns_a_429_during_syncs(
    devcloud, updates_on, start_worker
):
    """Microsoft's own limit (50 calls a minute per tenant, devcloud's default) and the
    portal's budget: 40 incidents a tenant cost 80 calls, so the job has to wait for the
    budget, while each tenant's sync runs on the calls the actions leave to it."""
    from partner_portal.incidents import tasks
    from partner_portal.incidents.models import IncidentActionJob, SyncOutcome, SyncRun
    from tests.waiting import wait_until

    tenants = [writable_tenant(devcloud, updates_on, count=40) for _ in range(3)]
    incidents = list(Incident.objects.filter(tenant__in=tenants))
    assert len(incidents) == 120
    user = actor()
    job = actions.create_job(
        user=user, action="status", values={"status": "Resolved"}, incidents=incidents
    )
    start_worker(concurrency=3, env={"MICROSOFT_INCIDENT_UPDATES": "true"})
    tasks.run_action_job.delay(job_pk=job.pk)
    for tenant in tenants:
        tasks.sync_tenant.delay(tenant_pk=tenant.pk, full=True)

    def finished() -> bool:
        return IncidentActionJob.objects.filter(pk=job.pk, finished_at__isnull=False).exists()

    wait_until(finished, timeout=240, what="the bulk action to finish")
    merged = {i.pk for i in incidents if i.redirect_incident_id}
    assert merged  # devcloud merges some incidents, as Microsoft does
    counts = job.counts()
    assert counts == {"pending": 0, "done": 120, "refused": 0, "conflict": 0, "failed": 0}, {
        (i.outcome, i.message) for i in job.items.all()
    }
    # Merged into an incident of the same job: that item makes the change.
    for item in job.items.filter(incident__in=merged):
        assert "which this job updates as well" in item.message, item.message
    for tenant in tenants:
        log = devcloud.requests_log(tid(tenant))["entries"]
        assert [e for e in log if e["status"] == 429] == []
        done = set(
            job.items.filter(outcome="done", incident__tenant=tenant)
            .exclude(incident__in=merged)
            .values_list("incident__microsoft_id", flat=True)
        )
        truth_now = {i["incidentId"]: i for i in devcloud.incidents(tid(tenant))}
        assert {truth_now[d]["status"] for d in done} == {"Resolved"}
        assert {i["status"] for i in truth_now.values()} <= {"Resolved", "Redirected"}
        # The sync was not starved: it ran beside the job (started before the job was
        # over) and succeeded.
        job.refresh_from_db()
        wait_until(
            lambda t=tenant: SyncRun.objects.filter(
                tenant=t, full=True, outcome=SyncOutcome.SUCCESS, started_at__lt=job.finished_at
            ).exists(),
            timeout=120,
            what="the sync beside the bulk action",
        )
    # The portal stored Microsoft's answers, and the syncs beside did not undo them.
    rows = Incident.objects.filter(tenant__in=tenants).exclude(pk__in=merged)
    assert set(rows.values_list("status", flat=True)) == {"Resolved"}
    assert Incident.objects.filter(pk__in=merged).exclude(status="Redirected").count() == 0
    # Actions and syncs stored the same incidents side by side: the summary's counts
    # followed every change exactly.
    assert_counts_exact()


def test_a_429_queues_the_action_and_the_job_finishes_it(client, devcloud, updates_on):
    from partner_portal.incidents.models import IncidentActionJob

    team = GroupFactory()
    tenant = writable_tenant(devcloud, updates_on, groups=[team])
    incident = Incident.objects.filter(tenant=tenant, redirect_incident_id=None).first()
    client.force_login(actor(team))
    devcloud.add_fault(
        endpoint="update_incident",
        tenant=tid(tenant),
        kind="status",
        status=429,
        retry_after=7,
        count=1,
    )
    response = client.post(
        reverse("incidents:act", kwargs={"incident_id": incident.pk}),
        {"action": "comment", "comment": "Seen", "expected": incident.last_update_time.isoformat()},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert 'data-outcome="queued"' in html and "about 7 s" in html
    job = IncidentActionJob.objects.get()
    assert list(job.items.values_list("outcome", flat=True)) == ["pending"]
    assert actions.run_job(job=job) is None  # what a worker does after the countdown
    assert job.counts()["done"] == 1
    assert truth(devcloud, incident)["comments"][-1]["comment"] == "Seen"


def test_a_stranger_cannot_act_on_incidents_of_tenants_they_do_not_see(
    client, devcloud, updates_on
):
    from partner_portal.incidents.models import IncidentActionJob

    tenant = writable_tenant(devcloud, updates_on, groups=[GroupFactory()])
    incident = Incident.objects.filter(tenant=tenant).first()
    client.force_login(actor())  # may act, but sees no tenant
    act = client.post(
        reverse("incidents:act", kwargs={"incident_id": incident.pk}),
        {"action": "status", "status": "Resolved"},
    )
    assert act.status_code == 404
    client.post(
        reverse("incidents:bulk_act"),
        {"action": "status", "status": "Resolved", "incident": incident.pk},
    )
    assert not IncidentActionJob.objects.exists()


@pytest.mark.parametrize(
    ("action", "data"),
    [
        ("assign", {"assigned_to": ""}),
        ("assign", {"assigned_to": "x" * 256}),
        ("status", {"status": "Redirected"}),
        ("status", {"status": "Sleeping"}),
        ("classify", {"pair": "FalsePositive:Malware"}),
        ("classify", {"pair": "TruePositive"}),
        ("comment", {"comment": "\x00 "}),
        ("tags", {"add": " , ", "remove": ""}),
        ("delete", {}),
    ],
)
def test_invalid_values_are_refused_before_microsoft_is_called(action, data):
    with pytest.raises(actions.InvalidAction):
        actions.clean_values(action, data)


def test_hostile_text_is_cleaned_before_it_is_sent():
    values = actions.clean_values("comment", {"comment": "a\x00b \ud800c"})
    assert values == {"comment": "ab ?c"}
    tags = actions.clean_values("tags", {"add": "x, y,x", "remove": ""})
    assert tags == {"add": ["x", "y"], "remove": []}
    pair = actions.clean_values("classify", {"pair": "FalsePositive:NotMalicious"})
    assert pair == {"classification": "FalsePositive", "determination": "Clean"}


@pytest.mark.parametrize(
    ("source", "granted", "missing"),
    [
        ("defender", ["Incident.ReadWrite.All"], ""),
        ("defender", ["Incident.Read.All"], "Incident.ReadWrite.All"),
        ("graph", ["SecurityIncident.ReadWrite.All"], ""),
        (
            "graph",
            ["SecurityIncident.Read.All", "Incident.ReadWrite.All"],
            "SecurityIncident.ReadWrite.All",
        ),
    ],
)
def test_the_write_permission_is_the_one_of_the_tenants_source(
    db, settings, source, granted, missing
):
    settings.MICROSOFT_INCIDENT_UPDATES = True
    tenant = ConsentedTenantFactory(source=source, granted_roles=granted)
    reason = actions.updates_blocked_reason(tenant)
    if missing:
        assert f"lacks {missing}:" in reason
    else:
        assert reason == ""
    settings.MICROSOFT_INCIDENT_UPDATES = False
    assert "MICROSOFT_INCIDENT_UPDATES" in actions.updates_blocked_reason(tenant)
