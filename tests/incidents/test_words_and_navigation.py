"""The incident list and page in plain words (labels beside Microsoft's values, unknown values
as sent) and the way around: incident numbers, the way back to the filtered list, tenant
links, the rows shown, tenants of the same name told apart."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from django.urls import reverse

from tests.factories import ConsentedTenantFactory
from tests.incidents import dashboard_data
from tests.incidents.dashboard_data import make_incident

contoso_and_fabrikam = dashboard_data.contoso_and_fabrikam

LIST = reverse("incidents:list")


def names(response) -> list[str]:
    return [incident.name for incident in response.context["page"].incidents]


def test_the_list_and_detail_say_microsofts_values_in_words(alice_client, tenant_a):
    incident = make_incident(
        tenant_a,
        name="Words",
        severity="UnSpecified",
        status="InProgress",
        classification="InformationalExpectedActivity",
        determination="NotAvailable",
    )
    html = alice_client.get(LIST).content.decode()
    row = re.search(r'<tr data-incident="\d+">.*?</tr>', html, re.S).group()
    assert ">Unspecified<" in row and ">In progress<" in row
    assert ">Informational, expected activity<" in row
    assert "InProgress" not in row and "UnSpecified" not in row
    detail = alice_client.get(reverse("incidents:detail", kwargs={"incident_id": incident.pk}))
    text = detail.content.decode()
    for words in ("In progress", "Informational, expected activity", "Not available"):
        assert f">{words}<" in text
    assert ">NotAvailable<" not in text and ">InformationalExpectedActivity<" not in text


def test_the_filters_offer_words_and_keep_microsofts_values(alice_client, tenant_a):
    html = alice_client.get(LIST).content.decode()
    assert '<option value="InProgress">In progress</option>' in html
    assert '<option value="MultiStagedAttack">Multi-staged attack</option>' in html
    assert '<option value="TruePositive">True positive</option>' in html


def test_an_unknown_value_is_shown_as_microsoft_sent_it(alice_client, tenant_a):
    make_incident(tenant_a, status="Quarantined", severity="Critical")
    html = alice_client.get(LIST).content.decode()
    assert ">Quarantined<" in html and ">Critical<" in html


def test_an_incident_number_finds_the_incident(alice_client, tenant_a):
    make_incident(tenant_a, name="Needle", microsoft_id=538921)
    make_incident(tenant_a, name="Haystack", microsoft_id=538922)
    assert names(alice_client.get(LIST, {"q": "538921"})) == ["Needle"]
    assert names(alice_client.get(LIST, {"q": "#538921"})) == ["Needle"]
    # A number too big for the column is searched as text, not an error.
    assert names(alice_client.get(LIST, {"q": "9" * 40})) == []


def test_the_detail_page_leads_back_to_the_filtered_list(alice_client, contoso_and_fabrikam):
    response = alice_client.get(LIST, {"severity": "High", "sort": "-severity", "q": ""})
    incident = contoso_and_fabrikam["a1"]
    link = re.search(rf'href="(/incidents/{incident.pk}/\?list=[^"]+)"', response.content.decode())
    detail = alice_client.get(link.group(1).replace("&amp;", "&"))
    back = detail.context["back_url"]
    assert urlsplit(back).path == LIST
    assert sorted(parse_qsl(urlsplit(back).query)) == [("severity", "High"), ("sort", "-severity")]


def test_the_way_back_only_ever_leads_to_the_list(alice_client, contoso_and_fabrikam):
    incident = contoso_and_fabrikam["a1"]
    url = reverse("incidents:detail", kwargs={"incident_id": incident.pk})
    for hostile in ("https://evil.example/", "//evil.example", "javascript:alert(1)", "\x00"):
        back = alice_client.get(url, {"list": hostile}).context["back_url"]
        assert back.startswith(f"{LIST}") and "//" not in back.removeprefix(LIST)


def test_tenant_names_link_to_the_tenant(alice_client, contoso_and_fabrikam, tenant_a):
    tenant_url = reverse("tenants:detail", kwargs={"tenant_pk": tenant_a.pk})
    assert f'href="{tenant_url}"' in alice_client.get(LIST).content.decode()
    summary = alice_client.get(reverse("incidents:summary")).content.decode()
    assert f'href="{tenant_url}"' in summary


def test_the_list_says_which_rows_it_shows(alice_client, tenant_a):
    for i in range(74):
        make_incident(tenant_a, name=f"n{i}", hours_ago=i + 1)
    first = alice_client.get(LIST)
    assert "1–50 of 74 incidents" in first.content.decode()
    second = alice_client.get(first.context["next_url"])
    assert "51–74 of 74 incidents" in second.content.decode()
    last = alice_client.get(first.context["last_url"])
    assert "51–74 of 74 incidents" in last.content.decode()
    back = alice_client.get(last.context["previous_url"])
    assert "1–50 of 74 incidents" in back.content.decode()
    assert names(back) == names(first)


def test_tenants_with_the_same_name_are_told_apart_in_the_filter(alice_client, team_a, tenant_a):
    other = ConsentedTenantFactory(
        display_name=tenant_a.display_name.upper(), primary_domain="", groups=[team_a]
    )
    html = alice_client.get(LIST).content.decode()
    options = re.findall(r'<option value="(\d+)"[^>]*>([^<]*)</option>', html)
    labels = dict(options)
    assert labels[str(other.pk)] == f"{other.display_name} (#{other.pk})"
    assert labels[str(tenant_a.pk)] != labels[str(other.pk)]
