from partner_portal.tenants.access import visible_tenants


def test_staff_see_only_their_groups_tenants(alice, bob, charlie, tenant_a, tenant_b):
    assert list(visible_tenants(alice)) == [tenant_a]
    assert list(visible_tenants(bob)) == [tenant_b]
    assert list(visible_tenants(charlie)) == []


def test_superusers_see_every_tenant(django_user_model, tenant_a, tenant_b):
    root = django_user_model.objects.create_superuser("root", "root@msp.example", "pw-unused-1")
    assert set(visible_tenants(root)) == {tenant_a, tenant_b}


def test_a_user_in_two_groups_sees_each_tenant_once(alice, team_b, tenant_a, tenant_b):
    alice.groups.add(team_b)
    tenant_a.groups.add(team_b)
    assert sorted(t.display_name for t in visible_tenants(alice)) == [
        "Contoso",
        "Fabrikam",
    ]
