"""Celery tasks of validation: thin wrappers around services (scheduled by beat)."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="validation.accuracy_audit")
def accuracy_audit(sample: int = 50) -> dict[str, Any]:
    """Audit ``sample`` cached values against fresh REST quotes; the row's summary."""
    # Imported here, as the style guide does: loading the task module never loads models.
    from validation.services import accuracy_audit_run

    audit = accuracy_audit_run(sample=sample)
    return {
        "id": audit.pk,
        "sampled": audit.sampled,
        "matched": audit.matched,
        "mismatched": audit.mismatched,
        "unavailable": audit.unavailable,
    }
