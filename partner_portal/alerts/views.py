from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from partner_portal.alerts import dispatch
from partner_portal.alerts.access import (
    get_channel_for_user,
    get_rule_for_user,
    visible_channels,
    visible_rules,
)
from partner_portal.alerts.forms import ChannelForm, RuleForm
from partner_portal.alerts.models import ChannelKind, Delivery, new_signing_secret

LAST_DELIVERIES = 50


def rule_list(request: HttpRequest) -> HttpResponse:
    rules = visible_rules(request.user).prefetch_related("channels", "tenants")
    channels = visible_channels(request.user)
    return render(request, "alerts/list.html", {"rules": rules, "channels": channels})


def rule_detail(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_rule_for_user(request.user, rule_id)
    deliveries = (
        Delivery.objects.filter(rule=rule)
        .select_related("channel", "incident__tenant", "digest", "change")
        .order_by("-created_at", "-pk")[:LAST_DELIVERIES]
    )
    fired = dispatch.would_have_fired(rule=rule) if "test" in request.GET else None
    return render(
        request,
        "alerts/rule_detail.html",
        {"rule": rule, "deliveries": deliveries, "would_have_fired": fired},
    )


def rule_create(request: HttpRequest) -> HttpResponse:
    form = RuleForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        form.instance.created_by = request.user
        rule = form.save()
        messages.success(request, f"Rule “{rule.name}” created.")
        return redirect("alerts:rule", rule_id=rule.pk)
    return render(request, "alerts/form.html", {"form": form, "what": "rule"})


def rule_edit(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_rule_for_user(request.user, rule_id)
    form = RuleForm(request.POST or None, instance=rule, user=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Rule saved.")
        return redirect("alerts:rule", rule_id=rule.pk)
    return render(request, "alerts/form.html", {"form": form, "what": "rule", "rule": rule})


@require_POST
def rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_rule_for_user(request.user, rule_id)
    rule.delete()
    messages.success(request, f"Rule “{rule.name}” deleted.")
    return redirect("alerts:list")


def channel_create(request: HttpRequest) -> HttpResponse:
    form = ChannelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        channel = form.save(commit=False)
        channel.created_by = request.user
        channel.url = form.cleaned_data["url"] if channel.kind != ChannelKind.EMAIL else ""
        secret = new_signing_secret() if channel.kind == ChannelKind.WEBHOOK else ""
        channel.secret = secret
        channel.save()
        if secret:
            # Shown once, on this answer only (never stored in a message or a page again).
            return render(request, "alerts/secret.html", {"channel": channel, "secret": secret})
        messages.success(request, f"Channel “{channel.name}” created.")
        return redirect("alerts:list")
    return render(request, "alerts/form.html", {"form": form, "what": "channel"})


def channel_edit(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = get_channel_for_user(request.user, channel_id)
    form = ChannelForm(request.POST or None, instance=channel)
    if request.method == "POST" and form.is_valid():
        channel = form.save(commit=False)
        if form.cleaned_data["url"]:
            channel.url = form.cleaned_data["url"]
        channel.save()
        messages.success(request, "Channel saved.")
        return redirect("alerts:list")
    return render(
        request, "alerts/form.html", {"form": form, "what": "channel", "channel": channel}
    )


@require_POST
def channel_delete(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = get_channel_for_user(request.user, channel_id)
    channel.delete()
    messages.success(request, f"Channel “{channel.name}” deleted.")
    return redirect("alerts:list")
