from tests.chromium import sign_in


def test_staff_signs_in_and_sees_the_navigation(page, live_server, alice):
    sign_in(page, live_server, "alice", "correct horse battery")
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Incidents").get_attribute("aria-current") == "page"
    assert page.get_by_text("alice").is_visible()


def test_wrong_password_keeps_the_user_on_the_login_page(page, live_server, alice):
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").is_visible()
    assert page.url.endswith("/login/")
