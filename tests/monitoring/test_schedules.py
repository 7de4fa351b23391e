"""The beat schedules: created by the setup command, kept when operators edit them, and run
by a real Celery beat and worker (the embedded pair ``runhub`` starts, over the broker of the
mode under test)."""

from __future__ import annotations

import threading
import time
from io import StringIO

import pytest
from celery.signals import task_postrun
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from mdproject.celery import EmbeddedCelery
from monitoring.models import Alert, PerformanceAction, PerformanceReport

pytestmark = pytest.mark.django_db(transaction=True)


def setup(*args: str) -> str:
    out = StringIO()
    call_command("setup_hub", "--no-admin", *args, stdout=out)
    return out.getvalue()


def test_setup_creates_the_schedules_once_and_keeps_operator_edits(sample_import) -> None:
    output = setup()
    tasks = {t.name: t for t in PeriodicTask.objects.select_related("interval", "crontab")}
    assert tasks["Health check"].task == "monitoring.health_check"
    assert (tasks["Health check"].interval.every, tasks["Health check"].interval.period) == (
        5, IntervalSchedule.SECONDS)  # fmt: skip
    assert tasks["Health check"].expire_seconds == 5
    assert tasks["Accuracy audit"].task == "validation.accuracy_audit"
    assert tasks["Accuracy audit"].interval.every == 60
    assert tasks["Performance report"].task == "monitoring.performance_report"
    assert tasks["Performance report"].interval.every == 60
    assert tasks["Retention"].task == "monitoring.retention"
    assert (tasks["Retention"].crontab.hour, tasks["Retention"].crontab.minute) == ("2", "30")
    assert "Scheduled periodic task: Health check" in output

    # An operator slows the health check down in the admin; the next start keeps it.
    slower, _ = IntervalSchedule.objects.get_or_create(every=15, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(name="Health check").update(interval=slower)
    assert "Scheduled periodic task" not in setup()
    assert PeriodicTask.objects.get(name="Health check").interval.every == 15
    assert PeriodicTask.objects.count() == len(tasks)


def test_beat_sends_the_scheduled_tasks_and_the_worker_runs_them(sample_import) -> None:
    setup()
    # As an operator would in the admin: the audit every 2 s instead of every minute, so
    # that this test sees it run.
    fast, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(name__in=["Accuracy audit", "Performance report"]).update(
        interval=fast
    )
    ran: list[str] = []
    done = threading.Event()

    def on_postrun(sender=None, state=None, **kwargs) -> None:
        ran.append(f"{sender.name}:{state}")
        if {"monitoring.health_check:SUCCESS", "validation.accuracy_audit:SUCCESS",
            "monitoring.performance_report:SUCCESS"} <= set(ran):  # fmt: skip
            done.set()

    task_postrun.connect(on_postrun, weak=False)
    celery = EmbeddedCelery(concurrency=2)
    celery.start()
    try:
        # The health check every 5 s, the audit and the performance report every 2 s.
        assert done.wait(30), f"ran: {ran}"
        started = time.monotonic()
        while ran.count("monitoring.health_check:SUCCESS") < 2:
            assert time.monotonic() - started < 15, f"the health check did not run again: {ran}"
            time.sleep(0.2)
    finally:
        celery.stop()
        task_postrun.disconnect(on_postrun)
    assert PeriodicTask.objects.get(name="Health check").total_run_count >= 2
    assert "monitoring.retention:SUCCESS" not in ran  # daily at 02:30, not at start
    # No feed worker runs here: the health check finds no connection and raises no alert;
    # the performance reports have no process to add up and change nothing.
    assert not Alert.objects.exists()
    report = PerformanceReport.objects.first()
    assert report is not None and report.processes == 0 and report.deliveries == 0
    assert not PerformanceAction.objects.exists()
