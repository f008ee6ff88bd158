from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path

from partner_portal.accounts import views as accounts_views


@login_not_required
def favicon(request: HttpRequest) -> HttpResponse:
    # Browsers ask for /favicon.ico whatever a page's <link rel=icon> says. Not permanent:
    # the target's hashed name changes with the file.
    return redirect(static("img/favicon.svg"))


urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("login/entra/", accounts_views.entra_login, name="entra_login"),
    path("login/entra/callback/", accounts_views.entra_callback, name="entra_callback"),
    path("logout/", accounts_views.sign_out, name="logout"),
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    path("tenants/", include("partner_portal.tenants.urls")),
    path("consent/", include("partner_portal.consent.urls")),
    path("alerts/", include("partner_portal.alerts.urls")),
    path("", include("partner_portal.incidents.urls")),
]

handler400 = "partner_portal.error_pages.bad_request"
handler403 = "partner_portal.error_pages.permission_denied"
handler404 = "partner_portal.error_pages.page_not_found"
handler500 = "partner_portal.error_pages.server_error"
