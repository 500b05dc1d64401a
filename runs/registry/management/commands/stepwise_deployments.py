"""`python manage.py stepwise_deployments`: the deployer's loop (runs/registry/deployer.py), started by `serve`."""

from __future__ import annotations

import signal
import time

from django.db import close_old_connections

from runs import sandbox
from runs.management.background import BackgroundCommand
from runs.registry.deployer import Deployer

POLL_S = 0.2


class Command(BackgroundCommand):
    help = "Keep a scorer process running for each deployment; swap model versions without a failed request."

    def handle(self, *args, **options) -> None:
        deployer = Deployer()
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            while not stopping:
                close_old_connections()
                for line in deployer.tick():
                    self.stdout.write(f"deployments: {line}")
                time.sleep(POLL_S)
        finally:
            deployer.stop_all()
            sandbox.stop()  # the scorers' copies of /etc and /dev
