"""Saves and deletes of instruments and provider accounts, wherever they come from (the
admin's forms and list edits, a shell), reach the feed workers as a control message.

Bulk writes (``QuerySet.update``, ``bulk_create``) send no signals: the services that make
them call ``pool_change_notify`` themselves.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from feeds.control import pool_change_notify
from feeds.models import Instrument, ProviderAccount


@receiver(post_save, sender=Instrument, dispatch_uid="feeds.instrument_saved")
@receiver(post_delete, sender=Instrument, dispatch_uid="feeds.instrument_deleted")
@receiver(post_save, sender=ProviderAccount, dispatch_uid="feeds.account_saved")
@receiver(post_delete, sender=ProviderAccount, dispatch_uid="feeds.account_deleted")
def pool_input_changed(sender: type, instance: Any, **kwargs: Any) -> None:
    if kwargs.get("raw"):  # loaddata
        return
    action = "deleted" if "created" not in kwargs else "saved"
    pool_change_notify(reason=f"{sender.__name__} {instance} {action}")
