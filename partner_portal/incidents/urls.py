from django.urls import path

from partner_portal.incidents import views

app_name = "incidents"
urlpatterns = [
    path("", views.incident_list, name="list"),
]
