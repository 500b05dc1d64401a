from __future__ import annotations

import django_rq
from django.core.management.base import BaseCommand

from runs.models import ComputeTarget
from runs.processes import become_subreaper, kill_orphans
from runs.queues import get_queue
from runs.worker import StepWorker


class Command(BaseCommand):
    help = "Run a worker that executes pipeline steps from one or more compute targets' queues."

    def add_arguments(self, parser) -> None:
        parser.add_argument("targets", nargs="*", help="compute target names (default: the default target)")
        parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
        parser.add_argument("--name", default=None)

    def handle(self, *args, targets: list[str], burst: bool, name: str | None, **options) -> None:
        if targets:
            found = {t.name: t for t in ComputeTarget.objects.filter(name__in=targets)}
            unknown = sorted(set(targets) - set(found))
            if unknown:
                self.stderr.write(f"unknown compute target(s): {', '.join(unknown)}")
                raise SystemExit(2)
            queue_names = [found[t].queue for t in targets]
        else:
            default = ComputeTarget.objects.filter(is_default=True).first()
            if default is None:
                self.stderr.write("no default compute target: run `python manage.py migrate` first")
                raise SystemExit(2)
            queue_names = [default.queue]
        # What this worker's steps leave running becomes its child, killed when the step ends.
        become_subreaper()
        # Steps of a worker that died on this host (SIGKILL, OOM killer, a crash) may still run:
        # their attempts are failed by the reconciler, and their processes end here.
        orphans = kill_orphans()
        if orphans:
            self.stderr.write(f"killed {len(orphans)} process(es) left by a dead worker: {orphans}")
        worker = StepWorker(
            [get_queue(q) for q in queue_names], connection=django_rq.get_connection("default"), name=name
        )
        # The scheduler moves delayed retries (backoff) onto the queue; RQ elects one per queue.
        worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")
