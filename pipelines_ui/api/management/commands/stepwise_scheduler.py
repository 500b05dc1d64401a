from __future__ import annotations

import logging
import signal
import threading

from django.db import close_old_connections
from django.utils import timezone

from pipelines_ui.api import data_triggers, schedules
from runs.management.background import BackgroundCommand

log = logging.getLogger(__name__)


class Command(BackgroundCommand):
    help = (
        "Start the runs of schedules whose fire time has come, and of data triggers whose datastore "
        "path changed. Any number may run at once: each fire time, and each change, still starts one run."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument(
            "--interval",
            type=float,
            default=1.0,
            help="the longest sleep between passes, in seconds, so that new schedules are seen (default 1)",
        )

    def handle(self, *args, once: bool, interval: float, **options) -> None:
        if interval <= 0:
            interval = 1.0
        if once:
            self.stdout.write(str(schedules.tick()))
            self.stdout.write(str(data_triggers.tick()))
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        log.info("scheduler started (passes at most %.1f s apart)", interval)
        while not stop.is_set():
            close_old_connections()
            wait = interval
            try:
                result = schedules.tick()
                if result.fired or result.failed or result.skipped or result.lost:
                    self.stdout.write(str(result), ending="\n")
                    self.stdout.flush()
                polled = data_triggers.tick()
                if polled.fired:
                    self.stdout.write(str(polled), ending="\n")
                    self.stdout.flush()
                now = timezone.now()
                soonest = schedules.next_due(now)
                if soonest is not None:
                    wait = min(interval, max((soonest - now).total_seconds(), 0.05))
            except Exception:  # a bad pass must not end the loop; the next one retries
                log.exception("scheduler pass failed")
            stop.wait(wait)
        log.info("scheduler stopped")
