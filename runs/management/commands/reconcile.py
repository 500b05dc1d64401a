from __future__ import annotations

import logging
import signal
import threading

from django.db import close_old_connections

from runs import reconciler
from runs.management.background import BackgroundCommand

log = logging.getLogger(__name__)


class Command(BackgroundCommand):
    help = "Fail steps whose worker stopped heart-beating and re-enqueue work Redis has lost."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--loop", action="store_true", help="keep running (every --interval seconds)")
        parser.add_argument("--interval", type=float, default=5.0)

    def handle(self, *args, loop: bool, interval: float, **options) -> None:
        if not loop:
            self.stdout.write(str(reconciler.tick()))
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        while not stop.is_set():
            close_old_connections()
            try:
                reconciler.tick()
            except Exception:  # a bad pass must not end the loop; the next one retries
                log.exception("reconciler pass failed")
            stop.wait(interval)
