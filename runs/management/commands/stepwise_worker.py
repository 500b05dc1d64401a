from __future__ import annotations

import gc

import django_rq
from channels.layers import get_channel_layer
from django.core.management.base import CommandError

# `jobs` here rather than in the first job (RQ imports a job's function on its first call):
# importing the step modules took the first step a worker ran a tenth of a second and more.
from runs import jobs, sandbox  # noqa: F401
from runs.executor import SDK_DIR
from runs.management.background import BackgroundCommand
from runs.models import ComputeTarget, Isolation
from runs.processes import become_subreaper, kill_orphans
from runs.queues import get_queue
from runs.queues import worker_name as rq_worker_name
from runs.worker import StepWorker, worker_name


def target_list(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


class Command(BackgroundCommand):
    help = (
        "Run a worker that executes pipeline steps of one or more compute targets. Any host pointed at the "
        "same DATABASE_URL, REDIS_URL and artifact store (STEPWISE_ARTIFACTS=s3://...) may run workers."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("targets", nargs="*", help="compute target names (or use --queues)")
        parser.add_argument(
            "--queues",
            type=target_list,
            default=[],
            metavar="A,B",
            help="compute target names, comma-separated (default: the default target)",
        )
        parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
        parser.add_argument("--name", default=None, help="the worker's name in RQ (default: random)")

    def handle(self, *args, targets: list[str], queues: list[str], burst: bool, name: str | None, **options) -> None:
        names = list(dict.fromkeys([*targets, *queues]))
        if names:
            found = {t.name: t for t in ComputeTarget.objects.filter(name__in=names)}
            unknown = [t for t in names if t not in found]
            if unknown:
                known = ", ".join(ComputeTarget.objects.values_list("name", flat=True)) or "none"
                raise CommandError(f"unknown compute target(s): {', '.join(unknown)} (known: {known})", returncode=2)
            chosen = [found[t] for t in names]
        else:
            default = ComputeTarget.objects.filter(is_default=True).first()
            if default is None:
                raise CommandError("no default compute target: run `python manage.py migrate` first", returncode=2)
            chosen = [default]
        # What this worker's steps leave running becomes its child, killed when the step ends.
        become_subreaper()
        # Steps of a worker that died on this host (SIGKILL, OOM killer, a crash) may still run:
        # their attempts are failed by the reconciler, and their processes end here.
        orphans = kill_orphans()
        if orphans:
            self.stderr.write(f"killed {len(orphans)} process(es) left by a dead worker: {orphans}")
        for target in chosen:
            if target.isolation == Isolation.SANDBOX:
                sandbox.warm_up(network=target.network, sdk=SDK_DIR)
        # Its first use imports channels_redis, which delayed the next step after the first a worker ran.
        get_channel_layer()
        gc.freeze()  # as after Django's start (pipelines_ui/api/apps.py), with all of the above
        worker = StepWorker(
            [get_queue(t.queue) for t in chosen],
            connection=django_rq.get_connection("default"),
            name=rq_worker_name(name),
            targets=[t.name for t in chosen],
        )
        self.stderr.write(f"worker {worker_name()} takes steps of {', '.join(t.name for t in chosen)}")
        # The scheduler moves delayed retries (backoff) onto the queue; RQ elects one per queue.
        try:
            worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")
        finally:
            # The steps' network namespace (a killed worker's is removed by the next one to make its own).
            sandbox.stop()
