"""Branded error pages (urls.handler400/403/404/500), for the public consent pages and the
staff pages alike. The consent views render the 404 themselves too, so that a mistyped
link never shows Django's debug page, even with DEBUG on (the demo)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

TITLES = {
    400: ("This request could not be understood", "Check the address, or go back and try again."),
    403: ("You can’t open this page", "It is not available to your account."),
    404: (
        "This page doesn’t exist",
        "The address may be mistyped, or the link may be incomplete: links are long, and an "
        "e-mail program can cut them. Copy the whole link again, or ask for a new one.",
    ),
    410: ("This link no longer works", "Ask for a new link."),
    500: (
        "Something went wrong on our side",
        "The problem was recorded. Try again in a few minutes.",
    ),
}


def is_public(request: HttpRequest | None) -> bool:
    """A customer's page (the consent link and Microsoft's callback), not a staff page."""
    path = request.path if request is not None else ""
    return path.startswith("/consent/") and not path.startswith("/consent/links/")


def error_page(request: HttpRequest | None, status: int) -> HttpResponse:
    title, message = TITLES[status]
    context = {
        "status": status,
        "title": title,
        "message": message,
        "public": is_public(request),
        "msp_name": settings.MSP_NAME,
    }
    html: str
    try:
        html = render_to_string("error.html", context, request=request)
    except Exception:  # noqa: BLE001 (a broken template must not turn a 500 into a crash)
        html = f"<!doctype html><title>{title}</title><h1>{title}</h1><p>{message}</p>"
    return HttpResponse(html, status=status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_page(request, 400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_page(request, 403)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_page(request, 404)


def server_error(request: HttpRequest) -> HttpResponse:
    # No request context: the error may have come from a context processor or the database.
    return error_page(None, 500)
