"""API tokens: created in the admin and shown once, stored as a digest, refused when wrong,
revoked, expired or the user is inactive; per-user limits default to the settings."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from feeds.models import ApiToken, ClientLimits
from feeds.selectors import client_limits_get
from feeds.services import api_token_create, api_token_digest, api_token_use

pytestmark = pytest.mark.django_db


def test_admin_creates_a_token_shows_it_once_and_stores_only_its_digest(
    admin_client, django_user_model
) -> None:
    owner = django_user_model.objects.create_user("algo")
    response = admin_client.post(
        reverse("admin:feeds_apitoken_add"), {"user": owner.pk, "name": "my bot"}, follow=True
    )
    shown = [m.message for m in response.context["messages"]]
    # The whole token, once (the "added" message names the row by its 12-character prefix).
    tokens = [t for m in shown for t in re.findall(r"mdh_[A-Za-z0-9_-]{20,}", m)]
    assert len(tokens) == 1
    token = tokens[0]
    row = ApiToken.objects.get(user=owner)
    assert row.name == "my bot" and row.prefix == token[:12]
    assert row.digest == api_token_digest(token) and token not in row.digest
    assert api_token_use(token=token) == owner
    page = admin_client.get(reverse("admin:feeds_apitoken_change", args=[row.pk]))
    assert token not in page.content.decode()  # never again


def test_revoke_action(admin_client, django_user_model) -> None:
    owner = django_user_model.objects.create_user("algo")
    row, token = api_token_create(user=owner, name="x")
    admin_client.post(reverse("admin:feeds_apitoken_changelist"),
                      {"action": "revoke", "_selected_action": [row.pk]})  # fmt: skip
    assert api_token_use(token=token) is None


@pytest.mark.parametrize("case", ["unknown", "revoked", "expired", "inactive", "not ours"])
def test_tokens_that_do_not_let_anyone_in(django_user_model, case: str) -> None:
    owner = django_user_model.objects.create_user("algo")
    row, token = api_token_create(user=owner, name="x")
    if case == "unknown":
        token = token[:-2] + "zz"
    elif case == "revoked":
        ApiToken.objects.filter(pk=row.pk).update(revoked=True)
    elif case == "expired":
        ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(1))
    elif case == "inactive":
        django_user_model.objects.filter(pk=owner.pk).update(is_active=False)
    else:
        token = "ghp_" + token[4:]
    assert api_token_use(token=token) is None


def test_use_records_when_a_token_was_last_used(django_user_model) -> None:
    owner = django_user_model.objects.create_user("algo")
    row, token = api_token_create(user=owner, name="x")
    assert row.last_used_at is None
    api_token_use(token=token)
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_limits_default_to_settings_and_an_admin_row_overrides(
    django_user_model, settings, admin_client
) -> None:
    user = django_user_model.objects.create_user("algo")
    assert client_limits_get(user=user).subscriptions == settings.DELIVERY["MAX_SUBSCRIPTIONS"]
    form = admin_client.get(reverse("admin:feeds_clientlimits_add")).content.decode()
    assert f'value="{settings.DELIVERY["MAX_SUBSCRIPTIONS"]}"' in form  # starts at the default
    ClientLimits.objects.create(user=user, max_subscriptions=7, max_requests_per_second=1,
                                max_updates_per_second=2, max_connections=3)  # fmt: skip
    limits = client_limits_get(user=user)
    assert (limits.subscriptions, limits.requests_per_second, limits.updates_per_second,
            limits.connections) == (7, 1, 2, 3)  # fmt: skip
