from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from partner_portal.accounts import views as accounts_views

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("login/entra/", accounts_views.entra_login, name="entra_login"),
    path("login/entra/callback/", accounts_views.entra_callback, name="entra_callback"),
    path("logout/", accounts_views.sign_out, name="logout"),
    path("admin/", admin.site.urls),
    path("tenants/", include("partner_portal.tenants.urls")),
    path("consent/", include("partner_portal.consent.urls")),
    path("alerts/", include("partner_portal.alerts.urls")),
    path("", include("partner_portal.incidents.urls")),
]
