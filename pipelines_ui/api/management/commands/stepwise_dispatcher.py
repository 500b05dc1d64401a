from __future__ import annotations

import logging
import signal
import threading

from django.db import close_old_connections
from django.utils import timezone

from pipelines_ui.api.dispatcher import DEFAULT_WORKERS, Dispatcher, deliver_due
from runs.management.background import BackgroundCommand

log = logging.getLogger(__name__)


class Command(BackgroundCommand):
    help = (
        "Send notifications (webhooks, emails) of ended runs, retrying failures with backoff. "
        "Any number may run at once: each delivery is sent by one of them at a time."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass (waits for its sends), then exit")
        parser.add_argument(
            "--interval", type=float, default=1.0, help="the longest sleep between passes, in seconds (default 1)"
        )
        parser.add_argument(
            "--workers", type=int, default=DEFAULT_WORKERS, help=f"sends at once (default {DEFAULT_WORKERS})"
        )

    def handle(self, *args, once: bool, interval: float, workers: int, **options) -> None:
        interval = interval if interval > 0 else 1.0
        workers = max(workers, 1)
        if once:
            self.stdout.write(str(deliver_due(workers=workers)))
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        dispatcher = Dispatcher(workers=workers)
        log.info("dispatcher started (%d sends at once)", workers)
        while not stop.is_set():
            close_old_connections()
            wait = interval
            try:
                result = dispatcher.tick()
                if result.delivered or result.retrying or result.failed:
                    self.stdout.write(str(result))
                    self.stdout.flush()
                wait = dispatcher.next_wait(timezone.now(), interval)
            except Exception:  # a bad pass must not end the loop; the next one retries
                log.exception("dispatcher pass failed")
            stop.wait(wait)
        # Sends in flight finish (each within its timeout) and are recorded: none is left claimed.
        dispatcher.drain()
        dispatcher.close()
        log.info("dispatcher stopped")
