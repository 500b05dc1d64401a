"""The figures: each one sets up what it needs, measures, and returns its rows.

Timestamps of runs and steps are the database's (set by the process that made the
change), so they measure Stepwise itself, not how often the bench polls.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.db import connection, transaction
from django.db.models import Count
from django.test import Client
from django.utils import timezone

from bench import pipelines
from bench.harness import (
    STATE_DIR,
    Processes,
    Server,
    Stack,
    children_cpu,
    median,
    percentile,
    process_cpu,
    wait_until,
)
from bench.report import Result
from pipelines_ui import graph
from pipelines_ui.models import Membership, PipelineVersion, Role, Team
from pipelines_ui.services import pipeline_create
from runs import executor, services
from runs.models import RUN_TERMINAL, ComputeTarget, Run, RunState, StepRun, StepState, Transition
from stepwise import dag
from stepwise.spec.model import Pipeline as PipelineSpec

# ---- shared helpers ------------------------------------------------------------------------


@dataclass
class Context:
    quick: bool
    procs: Processes
    stack: Stack | None = None
    user: object = None
    team: Team | None = None
    notes: list[str] = field(default_factory=list)

    def repeats(self, full: int, quick: int = 2) -> int:
        return quick if self.quick else full


def bench_user(name: str = "bench", team_name: str = "Bench"):
    user, _ = get_user_model().objects.get_or_create(username=name, defaults={"is_superuser": True, "is_staff": True})
    team, _ = Team.objects.get_or_create(name=team_name)
    Membership.objects.get_or_create(team=team, user=user, defaults={"role": Role.ADMIN})
    return user, team


def create_pipeline(ctx: Context, spec: PipelineSpec, *, team: Team | None = None, user=None) -> PipelineVersion:
    pipeline = pipeline_create(team=team or ctx.team, name=spec.name, user=user or ctx.user, spec=spec)
    assert pipeline.latest_version is not None
    return pipeline.latest_version


def run_and_wait(ctx: Context, version: PipelineVersion, *, timeout: float = 120, **kwargs) -> tuple[Run, float]:
    """Submit a run and wait for its final state; (run, seconds from before submit to seen finished)."""
    started = time.perf_counter()
    run = services.run_create(version=version, user=ctx.user, **kwargs)
    wait_for_runs([run.pk], timeout=timeout)
    wall = time.perf_counter() - started
    run.refresh_from_db()
    check_succeeded([run])
    return run, wall


def wait_for_runs(run_ids: list[int], *, timeout: float) -> None:
    def done() -> bool:
        return Run.objects.filter(pk__in=run_ids, state__in=RUN_TERMINAL).count() == len(run_ids)

    wait_until(done, timeout=timeout, interval=0.02, what=f"{len(run_ids)} run(s) to finish")


def check_succeeded(runs: list[Run]) -> None:
    for run in runs:
        if run.state != RunState.SUCCEEDED:
            bad = {s.name: (s.state, s.reason) for s in run.steps.exclude(state__in=[StepState.SUCCEEDED])}
            raise RuntimeError(f"run #{run.pk} {run.state}: {run.reason} {dict(list(bad.items())[:5])}")


def step_env() -> dict[str, str]:
    """The environment the executor gives a step (runs.executor.prepare), for the floors."""
    return executor.step_environment(workdir=floor_dir(), declared={}, stepwise={"PYTHONUNBUFFERED": "1"})


def run_step_process(command: str = pipelines.NOOP, *, env: dict[str, str], cwd: Path) -> None:
    """One step's subprocess as the executor starts it: `/bin/bash -c`, own session, output piped."""
    proc = subprocess.run(
        ["/bin/bash", "-c", command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        check=True,
    )
    assert proc.returncode == 0


def floor_dir() -> Path:
    path = STATE_DIR / "floor"
    path.mkdir(exist_ok=True)
    return path


def serial_floor(n: int) -> float:
    env, cwd = step_env(), floor_dir()
    started = time.perf_counter()
    for _ in range(n):
        run_step_process(env=env, cwd=cwd)
    return time.perf_counter() - started


def pool_floor(n: int, *, workers: int, root_and_join: bool) -> float:
    env, cwd = step_env(), floor_dir()
    started = time.perf_counter()
    if root_and_join:
        run_step_process(env=env, cwd=cwd)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda _i: run_step_process(env=env, cwd=cwd), range(n)))
    if root_and_join:
        run_step_process(env=env, cwd=cwd)
    return time.perf_counter() - started


def ms(delta: timedelta) -> float:
    return delta.total_seconds() * 1000


# ---- 1 and 3: chain50 and step-to-step latency -----------------------------------------------


def chain50(ctx: Context) -> list[Result]:
    n = 50
    version = create_pipeline(ctx, pipelines.chain("chain50", n))
    run_and_wait(ctx, version, force_rerun=True)  # warm-up: worker imports, caches
    totals, walls, floors, gaps = [], [], [], []
    for _ in range(ctx.repeats(5)):
        floors.append(serial_floor(n))
        run, wall = run_and_wait(ctx, version, force_rerun=True)
        totals.append((run.finished_at - run.created_at).total_seconds())
        walls.append(wall)
        steps = {s.name: s for s in run.steps.all()}
        gaps += [ms(steps[f"s{i}"].started_at - steps[f"s{i - 1}"].finished_at) for i in range(1, n)]
    total, floor = median(totals), median(floors)
    overhead_ms = (total - floor) / n * 1000
    p50, p95 = percentile(gaps, 50), percentile(gaps, 95)
    return [
        Result(
            "chain50",
            "chain50: 50 chained steps, created -> finished",
            total,
            "s",
            floor=floor,
            target="<= 1.15x floor",
            ok=total <= 1.15 * floor,
            samples=totals,
            details={"wall_s": walls, "floor_s": floors, "floor": "50 x `bash -c 'python -c pass'` in a loop"},
        ),
        Result(
            "chain50",
            "chain50: overhead per step",
            overhead_ms,
            "ms",
            target="< 5 ms",
            ok=overhead_ms < 5,
        ),
        Result(
            "step_latency",
            "step-to-step latency p50 (finished -> next started)",
            p50,
            "ms",
            target="< 3 ms",
            ok=p50 < 3,
            details={"edges": len(gaps), "max_ms": max(gaps), "min_ms": min(gaps)},
        ),
        Result(
            "step_latency",
            "step-to-step latency p95",
            p95,
            "ms",
            target="< 30 ms",
            ok=p95 < 30,
            samples=sorted(gaps),
        ),
    ]


# ---- 2: fan50 ------------------------------------------------------------------------------------


def fan50(ctx: Context) -> list[Result]:
    n = 50
    workers = ctx.stack.count if ctx.stack else 2
    version = create_pipeline(ctx, pipelines.fan("fan50", n))
    run_and_wait(ctx, version, force_rerun=True)
    totals, floors = [], []
    for _ in range(ctx.repeats(5)):
        floors.append(pool_floor(n, workers=workers, root_and_join=True))
        run, _wall = run_and_wait(ctx, version, force_rerun=True)
        totals.append((run.finished_at - run.created_at).total_seconds())
    total, floor = median(totals), median(floors)
    return [
        Result(
            "fan50",
            f"fan50: root, 50 parallel, join on {workers} workers",
            total,
            "s",
            floor=floor,
            target="<= 1.2x floor",
            ok=total <= 1.2 * floor,
            samples=totals,
            details={"floor_s": floors, "floor": f"root, 50 on a pool of {workers}, join (bash -c)"},
        )
    ]


# ---- 4: reused100 ----------------------------------------------------------------------------------


def reused100(ctx: Context) -> list[Result]:
    version = create_pipeline(ctx, pipelines.chain("reused100", 100))
    run_and_wait(ctx, version, timeout=300)  # populate: every step executes once
    walls, totals = [], []
    for _ in range(ctx.repeats(5)):
        run, wall = run_and_wait(ctx, version)
        states = set(run.steps.values_list("state", flat=True))
        if states != {StepState.REUSED}:
            raise RuntimeError(f"reused100: run #{run.pk} has steps in {states}, expected all reused")
        walls.append(wall)
        totals.append((run.finished_at - run.created_at).total_seconds())
    wall = median(walls)
    return [
        Result(
            "reused100",
            "reused100: 100 reused steps, submit -> succeeded",
            wall,
            "s",
            target="< 1 s",
            ok=wall < 1,
            samples=walls,
            details={"created_to_finished_s": totals},
        )
    ]


# ---- 8: load ---------------------------------------------------------------------------------------


def repeated(rounds: list[list[Result]]) -> list[Result]:
    """Rounds of the same rows as one row each: the median, every sample, the spread (min, max);
    a target is met only when it was met in every round."""
    merged = []
    for rows in zip(*rounds, strict=True):
        first = rows[0]
        values = [r.value for r in rows]
        floors = [r.floor for r in rows if r.floor is not None]
        judged = [r.ok for r in rows if r.ok is not None]
        merged.append(
            Result(
                first.figure,
                first.label,
                median(values),
                first.unit,
                floor=median(floors) if floors else None,
                target=first.target,
                ok=all(judged) if judged else None,
                samples=values,
                details={
                    "rounds": len(rows),
                    "spread": [min(values), max(values)],
                    "per_round": [r.details for r in rows],
                },
            )
        )
    return merged


def load(ctx: Context) -> list[Result]:
    return repeated([_load_once(ctx, n) for n in range(ctx.repeats(3, 2))])


def _load_once(ctx: Context, round_no: int) -> list[Result]:
    runs_n, steps_n = 50, 10
    workers = ctx.stack.count if ctx.stack else 2
    version = create_pipeline(ctx, pipelines.chain(f"load10_r{round_no}", steps_n))
    floor_cpu = children_cpu()
    floor = pool_floor(runs_n * steps_n, workers=workers, root_and_join=False)
    floor_cpu = children_cpu() - floor_cpu
    pids = [proc.pid for proc in ctx.stack.workers] if ctx.stack else []
    cpu_before = [process_cpu(pid) for pid in pids]
    submit_started = time.perf_counter()
    run_ids = [services.run_create(version=version, user=ctx.user, force_rerun=True).pk for _ in range(runs_n)]
    submit_s = time.perf_counter() - submit_started
    wait_for_runs(run_ids, timeout=600)
    cpu_after = [process_cpu(pid) for pid in pids]
    # Where the two cores go, per step: the workers' own Python and what they reaped (the steps).
    workers_cpu = sum(after[0] - before[0] for before, after in zip(cpu_before, cpu_after, strict=True))
    steps_cpu = sum(after[1] - before[1] for before, after in zip(cpu_before, cpu_after, strict=True))
    runs = list(Run.objects.filter(pk__in=run_ids))
    check_succeeded(runs)
    first = min(r.created_at for r in runs)
    last = max(r.finished_at for r in runs)
    span = (last - first).total_seconds()
    latencies = sorted((r.finished_at - r.created_at).total_seconds() for r in runs)
    slowest = latencies[-1]
    rate = runs_n * steps_n / span
    floor_rate = runs_n * steps_n / floor

    # Exactly once: one transition to running per step run, one attempt, nothing else started.
    step_runs = StepRun.objects.filter(run_id__in=run_ids)
    started = dict(
        Transition.objects.filter(run_id__in=run_ids, step_run__isnull=False, new=StepState.RUNNING)
        .values_list("step_run")
        .annotate(n=Count("id"))
        .values_list("step_run", "n")
    )
    total_steps = step_runs.count()
    twice = sum(1 for n in started.values() if n != 1)
    never = total_steps - len(started)
    retried = step_runs.exclude(attempt=1).count()
    exactly_once = total_steps == runs_n * steps_n and twice == 0 and never == 0 and retried == 0
    return [
        Result(
            "load",
            f"load: {runs_n} runs x {steps_n} steps at once, {workers} workers",
            rate,
            "steps/s",
            floor=floor_rate,
            details={
                "span_s": span,
                "submit_s": submit_s,
                "floor": f"{runs_n * steps_n} x bash -c on a pool of {workers}",
                "floor_s": floor,
            },
        ),
        Result(
            "load",
            "load: CPU per step, in the workers themselves",
            workers_cpu / (runs_n * steps_n) * 1000,
            "ms",
            details={"workers_cpu_s": workers_cpu},
        ),
        Result(
            "load",
            "load: CPU per step, in the step's processes (sandbox included)",
            steps_cpu / (runs_n * steps_n) * 1000,
            "ms",
            floor=floor_cpu / (runs_n * steps_n) * 1000,
            details={"steps_cpu_s": steps_cpu, "floor_cpu_s": floor_cpu},
        ),
        Result("load", "load: run latency p50, created -> finished", median(latencies), "s"),
        Result("load", "load: slowest run, created -> finished", slowest, "s"),
        Result(
            "load",
            "load: every step executed exactly once",
            float(total_steps - twice - never - retried),
            "steps",
            target=f"= {runs_n * steps_n}",
            ok=exactly_once,
            details={
                "step_runs": total_steps,
                "started_more_than_once": twice,
                "never_started": never,
                "retried": retried,
            },
        ),
    ]


# ---- recovery ------------------------------------------------------------------------------------


def _worker_of(step_run: StepRun, stack: Stack) -> subprocess.Popen:
    pid = int(step_run.worker.rpartition(":")[2])
    return next(proc for proc in stack.workers if proc.pid == pid)


def _running(run_id: int, name: str) -> StepRun | None:
    return StepRun.objects.filter(run_id=run_id, name=name, state=StepState.RUNNING).first()


def _recover_from_a_dead_worker(ctx: Context, round_no: int) -> list[Result]:
    """SIGKILL the worker of a running step; the reconciler (every 5 s, heartbeat limit 15 s)
    fails the attempt as "worker lost" and the retry runs on the other worker."""
    sleeper = pipelines.step("sleeper", command="sleep 4")
    sleeper.max_retries = 1
    version = create_pipeline(ctx, pipelines.pipeline_of(f"recovery_worker_r{round_no}", [sleeper]))
    run = services.run_create(version=version, user=ctx.user, force_rerun=True)
    step = wait_until(lambda: _running(run.pk, "sleeper"), timeout=60, what="the step to start")
    victim = _worker_of(step, ctx.stack)
    victim.kill()
    victim.wait()
    killed = timezone.now()
    wait_for_runs([run.pk], timeout=180)
    run.refresh_from_db()
    check_succeeded([run])
    lost = Transition.objects.get(step_run=step, attempt=1, new=StepState.FAILED)
    ctx.stack.start_worker()
    ctx.stack.wait_ready()
    return [
        Result(
            "recovery",
            "recovery: SIGKILLed worker -> attempt failed as worker lost",
            (lost.created_at - killed).total_seconds(),
            "s",
            target="< 60 s",
            ok=(lost.created_at - killed) < timedelta(seconds=60) and "worker lost" in lost.reason,
        ),
        Result(
            "recovery",
            "recovery: SIGKILLed worker -> run succeeded by a retry",
            ms(run.finished_at - killed) / 1000,
            "s",
        ),
    ]


def _recover_from_an_emptied_redis(ctx: Context, round_no: int) -> list[Result]:
    """Restart Redis empty while a step runs and five wait in the queue; the run started from
    the CLI, by workers and a reconciler on a private redis-server, still completes."""
    from redis import Redis

    from bench.harness import ROOT, free_port

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server_args = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    server = ctx.procs.start(server_args, log_name="private-redis")
    wait_until(lambda: _pings(url), timeout=10, what="the private redis-server")
    # Only this stack may see the run: the bench's own reconciler would re-enqueue its steps elsewhere.
    ctx.stack.stop()
    private = Stack(ctx.procs, workers=1, env={"REDIS_URL": url})
    private.queue = ctx.stack.queue
    try:
        private.start()
        first = pipelines.step("a_first", command="sleep 3")
        rest = [pipelines.step("after", ["a_first"])] + [pipelines.step(f"x{i}") for i in range(4)]
        name = f"recovery_redis_r{round_no}"
        create_pipeline(ctx, pipelines.pipeline_of(name, [first, *rest]))
        manage = [sys.executable, str(ROOT / "manage.py"), "pipelines", "run", name]
        cli = ctx.procs.start(
            [*manage, "--team", ctx.team.name, "--user", ctx.user.username, "--force-rerun", "--json"],
            log_name="recovery-cli",
            env={"REDIS_URL": url},
        )
        running = StepRun.objects.filter(run__version__pipeline__name=name, name="a_first", state=StepState.RUNNING)
        step = wait_until(running.first, timeout=60, what="a_first to start")
        server.kill()
        server.wait()
        server = ctx.procs.start(server_args, log_name="private-redis")
        wait_until(lambda: _pings(url), timeout=10, what="the restarted redis-server")
        restarted = timezone.now()
        assert Redis.from_url(url).dbsize() <= 2, "the restarted Redis keeps nothing"
        wait_for_runs([step.run_id], timeout=180)
        cli.wait(timeout=60)
        run = Run.objects.get(pk=step.run_id)
        check_succeeded([run])
        twice = (
            Transition.objects.filter(run=run, step_run__isnull=False, new=StepState.RUNNING)
            .values("step_run")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
            .count()
        )
    finally:
        private.stop()
        ctx.procs.stop([server])
        ctx.stack.start()
    return [
        Result(
            "recovery",
            "recovery: Redis restarted empty -> run succeeded",
            ms(run.finished_at - restarted) / 1000,
            "s",
            target="completes, each step once",
            ok=cli.returncode == 0 and twice == 0,
            details={"cli_exit": cli.returncode, "steps_started_twice": twice},
        )
    ]


def _pings(url: str) -> bool:
    from redis import Redis, RedisError

    try:
        return bool(Redis.from_url(url, socket_timeout=0.5).ping())
    except RedisError:
        return False


def recovery(ctx: Context) -> list[Result]:
    rounds = ctx.repeats(3, 2)
    return repeated([_recover_from_a_dead_worker(ctx, n) for n in range(rounds)]) + repeated(
        [_recover_from_an_emptied_redis(ctx, n) for n in range(rounds)]
    )


def _serve_children(pid: int) -> dict[int, list[str]]:
    """pid -> argv of each live child of `pid` (by the parent pid in /proc/<pid>/stat)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(pid) and fields[0] not in ("Z", "X"):
            found[int(entry.name)] = argv
    return found


def serve_recovery(ctx: Context) -> list[Result]:
    """`manage.py serve` as `make run` starts it; SIGKILL the worker of a running step (as the OOM
    killer does). serve fails the attempt as "worker lost" as soon as it sees the worker die,
    restarts the worker, and the retry (after the retry backoff) makes the run succeed."""
    from rq import Worker

    from bench.harness import ROOT, free_port
    from runs.queues import get_queue

    if ctx.stack is not None:
        ctx.stack.stop()  # serve's workers take the bench target's steps: no other worker may
    serve = ctx.procs.start(
        [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(free_port()), "--workers", "2"],
        log_name="serve",
    )
    queue = get_queue(ComputeTarget.objects.get(is_default=True).queue)

    def serve_workers() -> set[int]:
        if serve.poll() is not None:
            raise RuntimeError(f"serve exited with {serve.returncode}: see {STATE_DIR / 'logs' / 'serve.log'}")
        return {pid for pid, argv in _serve_children(serve.pid).items() if "stepwise_worker" in argv}

    def workers_ready() -> bool:
        pids = serve_workers()
        return len(pids) == 2 and pids <= {w.pid for w in Worker.all(queue=queue)}

    sleeper = pipelines.step("sleeper", command='if [ "$STEPWISE_ATTEMPT" = 1 ]; then sleep 600; fi')
    sleeper.max_retries = 1
    version = create_pipeline(ctx, pipelines.pipeline_of("recovery_serve", [sleeper]))
    lost_s, back_s, done_s = [], [], []
    try:
        for _ in range(ctx.repeats(5, 2)):
            wait_until(workers_ready, timeout=60, interval=0.1, what="serve's two workers")
            run = services.run_create(version=version, user=ctx.user, force_rerun=True)
            step = wait_until(lambda r=run: _running(r.pk, "sleeper"), timeout=60, what="the step to start")
            victim = int(step.worker.rpartition(":")[2])
            if victim not in _serve_children(serve.pid):
                raise RuntimeError(f"the step ran on {step.worker}, not on a worker of serve")
            os.kill(victim, signal.SIGKILL)
            killed, killed_clock = timezone.now(), time.perf_counter()
            wait_until(lambda v=victim: len(serve_workers() - {v}) == 2, timeout=60, what="serve to restart the worker")
            back_s.append(time.perf_counter() - killed_clock)
            wait_for_runs([run.pk], timeout=180)
            run.refresh_from_db()
            check_succeeded([run])
            lost = Transition.objects.get(step_run=step, attempt=1, new=StepState.FAILED)
            if "worker lost" not in lost.reason:
                raise RuntimeError(f"attempt 1 failed for another reason: {lost.reason}")
            lost_s.append((lost.created_at - killed).total_seconds())
            done_s.append((run.finished_at - killed).total_seconds())
    finally:
        ctx.procs.stop([serve])
        if ctx.stack is not None:
            ctx.stack.start()
    return [
        Result(
            "serve_recovery",
            "recovery under serve: SIGKILLed worker -> attempt failed as worker lost",
            median(lost_s),
            "s",
            target="< 60 s",
            ok=max(lost_s) < 60,
            samples=lost_s,
        ),
        # The rounds kill serve's worker again seconds after its restart: serve's supervisor takes
        # that for a crash loop and doubles its delay each time (1, 2, 4, 8, 16 s; README). The
        # target is the restart of a worker that was up; the later rounds show the backoff.
        Result(
            "serve_recovery",
            "recovery under serve: SIGKILLed worker -> restarted (first death)",
            back_s[0],
            "s",
            target="< 10 s",
            ok=back_s[0] < 10,
        ),
        Result(
            "serve_recovery",
            "recovery under serve: killed again within a minute -> restarted, median",
            median(back_s[1:] or back_s),
            "s",
            samples=back_s,
            details={"backoff": "doubled at each quick death, up to 30 s (pipelines_ui/supervisor.py)"},
        ),
        Result(
            "serve_recovery",
            "recovery under serve: SIGKILLed worker -> run succeeded by a retry",
            median(done_s),
            "s",
            samples=done_s,
        ),
    ]


# ---- 5: live latency ---------------------------------------------------------------------------------


def session_cookie(user) -> str:
    from importlib import import_module

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


_STAMP = {"queued": "queued_at", "running": "started_at"}


def _event_time(event: dict) -> datetime | None:
    if event.get("type") == "step":
        key = _STAMP.get(event.get("state"), "finished_at")
    elif event.get("type") == "run":
        key = "finished_at" if event.get("state") in RUN_TERMINAL else "started_at"
    else:
        return None
    value = event.get(key)
    return datetime.fromisoformat(value) if value else None


async def _watch(url: str, origin: str, cookie: str, *, snapshot: int, timeout: float) -> list[tuple[float, dict]]:
    """Every message after the snapshot, with its arrival time, until the run's final state."""
    from websockets.asyncio.client import connect

    arrived: list[tuple[float, dict]] = []
    async with connect(url, origin=origin, additional_headers={"Cookie": cookie}, open_timeout=10) as ws:
        for _ in range(snapshot):
            await asyncio.wait_for(ws.recv(), timeout)
        while True:
            raw = await asyncio.wait_for(ws.recv(), timeout)
            arrived.append((time.time(), json.loads(raw)))
            event = arrived[-1][1]
            if event.get("type") == "run" and event.get("state") in RUN_TERMINAL:
                return arrived


def live(ctx: Context) -> list[Result]:
    n = 30
    server = Server(ctx.procs)
    server.start()
    try:
        cookie = session_cookie(ctx.user)
        origin = f"http://127.0.0.1:{server.port}"
        # The first step sleeps so that the socket is connected before the events of interest.
        version = create_pipeline(ctx, pipelines.chain("live30", n, first_command="sleep 1.5"))
        latencies: list[float] = []
        by_kind: dict[str, list[float]] = {}
        received = 0
        for index in range(ctx.repeats(3, 1) + 1):
            run = services.run_create(version=version, user=ctx.user, force_rerun=True)
            url = f"ws://127.0.0.1:{server.port}/ws/runs/{run.pk}/"
            events = asyncio.run(_watch(url, origin, cookie, snapshot=n + 1, timeout=60))
            if index == 0:
                continue  # warm-up: daphne's first connection and database queries
            received += len(events)
            for arrival, event in events:
                stamp = _event_time(event)
                if stamp is None:
                    continue
                latency = (arrival - stamp.timestamp()) * 1000
                latencies.append(latency)
                by_kind.setdefault(f"{event['type']}:{event.get('state')}", []).append(latency)
    finally:
        server.stop()
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    details = {
        "events": len(latencies),
        "messages": received,
        "from": "the transition's timestamp in the payload (taken before the commit) to arrival at the client",
        "p50_by_event": {k: round(percentile(v, 50), 2) for k, v in sorted(by_kind.items())},
        "p95_by_event": {k: round(percentile(v, 95), 2) for k, v in sorted(by_kind.items())},
        "max_ms": max(latencies),
    }
    return [
        Result("live", "live: state change -> websocket client, p50", p50, "ms", details=details),
        Result("live", "live: state change -> websocket client, p95", p95, "ms", target="< 50 ms", ok=p95 < 50),
    ]


# ---- 6: big DAGs ----------------------------------------------------------------------------------------


def clear_svg_cache() -> None:
    with graph._lru_lock:
        graph._lru.clear()
    shutil.rmtree(graph._cache_dir(), ignore_errors=True)


def timed(fn: Callable[[], object], *, repeats: int, budget_s: float, before: Callable[[], None] | None = None):
    """Up to `repeats` timings of fn (at least one), stopping early once `budget_s` is spent."""
    samples: list[float] = []
    spent = 0.0
    result = None
    while len(samples) < repeats and (not samples or spent < budget_s):
        if before is not None:
            before()
        started = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - started
        samples.append(elapsed)
        spent += elapsed
    return samples, result


@dataclass
class PageTiming:
    samples_ms: list[float]
    queries: int
    size: int
    status: int

    @property
    def median_ms(self) -> float:
        return median(self.samples_ms)


class QueryCounter:
    """Counts the SQL statements of the default connection, across the Client's close and reopen.

    CaptureQueriesContext reads `connection.queries_log`, which `request_started` resets
    in the middle of an in-process request; an execute wrapper stays on the connection.
    """

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def page(client: Client, url: str, *, repeats: int, before: Callable[[], None] | None = None, budget_s: float = 5):
    """Server time of GET url in-process (middleware, views, templates), its queries and size.

    The first request counts the queries. With `before` (e.g. clearing the SVG cache) every
    request is cold and the first one is a sample too; without, it is a warm-up and at least
    one more request is timed. Then up to `repeats` samples, fewer once `budget_s` is spent.
    """
    if before is not None:
        before()
    counter = QueryCounter()
    with connection.execute_wrapper(counter):
        started = time.perf_counter()
        response = client.get(url)
        first = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"GET {url}: {response.status_code}")
    samples: list[float] = []
    if before is not None:
        samples.append(first)
    if len(samples) < repeats and (first < budget_s or before is None):
        more, _ = timed(lambda: client.get(url), repeats=repeats - len(samples), budget_s=budget_s, before=before)
        samples += more
    return PageTiming(
        samples_ms=[s * 1000 for s in samples],
        queries=counter.count,
        size=len(response.content),
        status=response.status_code,
    )


def finished_run(version: PipelineVersion, spec: PipelineSpec, user) -> Run:
    """A succeeded run of `version` with one step run per step (bulk inserted, no execution)."""
    now = timezone.now()
    with transaction.atomic():
        run = Run.objects.create(
            pipeline=version.pipeline,
            version=version,
            state=RunState.SUCCEEDED,
            created_by=user,
            started_at=now - timedelta(seconds=len(spec.jobs)),
            finished_at=now,
        )
        StepRun.objects.bulk_create(
            [
                StepRun(
                    run=run,
                    name=name,
                    state=StepState.SUCCEEDED,
                    attempt=1,
                    queue=pipelines.TARGET,
                    queued_at=now - timedelta(seconds=len(spec.jobs) - i),
                    started_at=now - timedelta(seconds=len(spec.jobs) - i - 0.1),
                    finished_at=now - timedelta(seconds=len(spec.jobs) - i - 0.9),
                    exit_code=0,
                )
                for i, name in enumerate(spec.jobs)
            ],
            batch_size=1000,
        )
    return run


def big_dags(ctx: Context) -> list[Result]:
    results: list[Result] = []
    sizes = (100, 1000, 5000)
    specs = {n: pipelines.layered(f"dag{n}", n) for n in sizes}
    for n in sizes:
        spec = specs[n]
        samples, svg = timed(
            lambda spec=spec: graph.render_svg(dag.pipeline_dot(spec)),
            repeats=ctx.repeats(5, 1),
            budget_s=5,
            before=clear_svg_cache,
        )
        results.append(
            Result(
                "big_dags",
                f"DAG SVG render, {n:,} steps (cold)",
                median(samples) * 1000,
                "ms",
                samples=[s * 1000 for s in samples],
                details={"svg_kib": round(len(svg) / 1024), "edges": len(spec.edges())},
            )
        )
    client = Client()
    client.force_login(ctx.user)
    for n in (1000, 5000):
        spec = specs[n]
        setup_started = time.perf_counter()
        version = create_pipeline(ctx, spec)
        run = finished_run(version, spec, ctx.user)
        setup_s = time.perf_counter() - setup_started
        pages = [
            ("editor page", f"/pipelines/{version.pipeline_id}/", None),
            ("run page", f"/runs/{run.pk}/", "< 500 ms" if n == 5000 else None),
        ]
        for label, url, target in pages:
            for cold in (True, False):
                if cold and n >= 5000 and (ctx.quick or label == "editor page"):
                    # Dominated by the dot layout measured above (tens of seconds): the run
                    # page's, which has a target, is measured unless --quick.
                    continue
                timing = page(
                    client, url, repeats=ctx.repeats(5, 2), before=clear_svg_cache if cold else None, budget_s=5
                )
                value = timing.median_ms
                results.append(
                    Result(
                        "big_dags",
                        f"{label}, {n:,} steps ({'cold SVG' if cold else 'cached SVG'})",
                        value,
                        "ms",
                        target=target or "",
                        ok=(value < 500) if target else None,
                        samples=timing.samples_ms,
                        details={
                            "url": url,
                            "response_kib": round(timing.size / 1024),
                            "queries": timing.queries,
                            "setup_s": round(setup_s, 2),
                        },
                    )
                )
    return results


# ---- 7: history ---------------------------------------------------------------------------------------------


def insert_rows(model, template, rows: list[dict[str, object]]) -> None:
    """INSERT rows of `model` with executemany: `template`'s values, overridden per row by field name.

    bulk_create prepares every value of every row through its field (about 0.5 ms per run with
    its step runs here); this prepares the template once, so 400,000 rows take seconds.
    """
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    base = {f.name: f.get_db_prep_save(f.pre_save(template, True), connection) for f in fields}
    by_name = {f.name: f for f in fields} | {f.attname: f for f in fields}
    varying = sorted({key for row in rows for key in row})
    prepared = {key: by_name[key] for key in varying}
    columns = [f.column for f in fields]
    order = [(f.name, f.attname) for f in fields]
    sql = (
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} "
        f"({', '.join(connection.ops.quote_name(c) for c in columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    )
    params = []
    for row in rows:
        values = []
        for name, attname in order:
            key = name if name in row else attname if attname in row else None
            if key is None:
                values.append(base[name])
            else:
                values.append(prepared[key].get_db_prep_save(row[key], connection))
        params.append(values)
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def add_history(version: PipelineVersion, user, count: int, *, steps_per_run: int = 3) -> float:
    """Insert `count` finished runs of `version` with a few step runs each; seconds taken."""
    started = time.perf_counter()
    now = timezone.now()
    states = [RunState.SUCCEEDED] * 8 + [RunState.FAILED, RunState.CANCELED]
    run_template = Run(pipeline_id=version.pipeline_id, version=version, created_by=user)
    step_template = StepRun(run_id=0, name="s", attempt=1, queue=pipelines.TARGET)
    batch = 10_000
    with transaction.atomic():
        for offset in range(0, count, batch):
            size = min(batch, count - offset)
            rows = []
            for i in range(size):
                begun = now - timedelta(minutes=count - offset - i)
                rows.append(
                    {
                        "state": states[i % len(states)],
                        "created_at": begun,
                        "started_at": begun,
                        "finished_at": begun + timedelta(seconds=30),
                    }
                )
            insert_rows(Run, run_template, rows)
            runs = list(
                Run.objects.filter(pipeline_id=version.pipeline_id)
                .order_by("-id")
                .values_list("id", "state", "started_at", "finished_at")[:size]
            )
            insert_rows(
                StepRun,
                step_template,
                [
                    {
                        "run_id": run_id,
                        "name": f"s{j}",
                        "state": StepState.SUCCEEDED if state == RunState.SUCCEEDED else StepState.FAILED,
                        "started_at": begun,
                        "finished_at": ended,
                    }
                    for run_id, state, begun, ended in runs
                    for j in range(steps_per_run)
                ],
            )
    return time.perf_counter() - started


def history(ctx: Context) -> list[Result]:
    user, team = bench_user("history", "History")
    version = create_pipeline(ctx, pipelines.chain("history3", 3), team=team, user=user)
    client = Client()
    client.force_login(user)
    pages = {
        "runs list": "/runs/",
        "a pipeline's runs": f"/runs/?pipeline={version.pipeline_id}",
        "pipeline page": f"/pipelines/{version.pipeline_id}/",
        "pipelines list": "/pipelines/",
    }
    measured: dict[int, dict[str, PageTiming]] = {}
    inserted = 0
    setup: dict[int, float] = {}
    for total in (1_000, 100_000):
        setup[total] = add_history(version, user, total - inserted)
        inserted = total
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        measured[total] = {}
        for label, url in pages.items():
            measured[total][label] = page(client, url, repeats=ctx.repeats(5, 3))
    results = []
    for label in pages:
        small, big = measured[1_000][label], measured[100_000][label]
        constant = small.queries == big.queries
        results.append(
            Result(
                "history",
                f"{label} with 1,000 runs",
                small.median_ms,
                "ms",
                samples=small.samples_ms,
                details={"url": pages[label], "queries": small.queries, "setup_s": round(setup[1_000], 2)},
            )
        )
        results.append(
            Result(
                "history",
                f"{label} with 100,000 runs",
                big.median_ms,
                "ms",
                target="< 200 ms",
                ok=big.median_ms < 200,
                samples=big.samples_ms,
                details={"url": pages[label], "queries": big.queries, "setup_s": round(setup[100_000], 2)},
            )
        )
        results.append(
            Result(
                "history",
                f"{label}: SQL queries at 100,000 runs (at 1,000: {small.queries})",
                float(big.queries),
                "queries",
                target="constant",
                ok=constant,
                details={"queries_1000": small.queries, "queries_100000": big.queries},
            )
        )
    return results


# ---- the step sandbox's start-up cost ----------------------------------------------------------


def sandbox_startup(ctx: Context) -> list[Result]:
    """One step's process in the sandbox (runs/sandbox.py) against the same process without it."""
    from runs import sandbox

    n = 50
    workdir = floor_dir() / "sandboxed"
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "code").mkdir(parents=True)
    sandbox.prepare_workdir(workdir, hand_over=True)
    env = step_env()
    results = []
    try:
        for network in (True, False):
            # With what every step's sandbox binds besides its own inputs: the step SDK.
            box = sandbox.Sandbox(workdir=workdir, cwd=workdir / "code", network=network, sdk=executor.SDK_DIR)
            sandbox.start(["/bin/true"], box).wait()  # the network namespace is made once, before timing
            # Each step run both ways, one right after the other: the VM's speed drifts by more
            # than the sandbox costs over a batch of 50, so each pair's difference is what counts.
            # The step is `bash -c true`: the sandbox's cost does not depend on what runs in it,
            # and `python -c pass` alone varies by more than that cost from one start to the next.
            plain, boxed, rounds = [], [], []
            for _ in range(ctx.repeats(5)):
                pairs = []
                for _ in range(n):
                    started = time.perf_counter()
                    run_step_process("true", env=env, cwd=workdir / "code")
                    middle = time.perf_counter()
                    # As the executor starts a step (runs/executor.py).
                    proc = sandbox.start(
                        ["/bin/bash", "-c", "true"],
                        box,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                    proc.communicate()
                    assert proc.returncode == 0
                    ended = time.perf_counter()
                    plain.append(middle - started)
                    boxed.append(ended - middle)
                    pairs.append((ended - middle) - (middle - started))
                rounds.append(median(pairs) * 1000)
            cost_ms = median(b - p for b, p in zip(boxed, plain, strict=True)) * 1000
            shared = sandbox.steps_share_host_network()
            kind = "network namespace (pasta)" if network and not shared else "no network" if not network else "host"
            results.append(
                Result(
                    "sandbox",
                    f"sandbox start-up per step, network: {kind}",
                    cost_ms,
                    "ms",
                    target="< 5 ms",
                    ok=cost_ms < 5,
                    samples=rounds,
                    details={
                        "floor_ms": median(plain) * 1000,
                        "sandboxed_ms": median(boxed) * 1000,
                        "steps": len(plain),
                        "method": "median of per-step differences, `bash -c true` without then with the sandbox",
                    },
                )
            )
    finally:
        sandbox.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


# ---- a step printing a million lines ------------------------------------------------------------

# As steps print (PYTHONUNBUFFERED: one write a line), and as fast as a pipe takes them.
MILLION_PRINTS = "python -c \"for i in range(1000000): print(f'line {i}: a step that talks a lot')\""
MILLION_LINES_AT_ONCE = "seq 1000000"


def big_log(ctx: Context) -> list[Result]:
    """A step printing a million lines against the same command writing them to a file: the worker
    reads, numbers and gzips every line, keeps the head and tail in the database and stores the
    whole log in the artifact store."""
    from runs import logs
    from runs.models import AttemptLog, LogChunk

    env, cwd = step_env(), floor_dir()
    results = []
    for name, command in (("prints", MILLION_PRINTS), ("seq", MILLION_LINES_AT_ONCE)):
        version = create_pipeline(
            ctx, pipelines.pipeline_of(f"biglog-{name}", [pipelines.step("loud", command=command)])
        )
        durations, floors = [], []
        for _ in range(ctx.repeats(3)):
            started = time.perf_counter()
            run_step_process(f"{command} > million.log", env=env, cwd=cwd)
            floors.append(time.perf_counter() - started)
            run, _wall = run_and_wait(ctx, version, force_rerun=True, timeout=600)
            step = run.steps.get(name="loud")
            durations.append(step.duration_s)
        duration, floor = median(durations), median(floors)
        if name == "prints":
            label, target, ok = "biglog: a step printing 1,000,000 lines", "<= 1.25x floor", duration <= 1.25 * floor
        else:
            # The command costs next to nothing: what is left is the worker's own work on the lines.
            label, target, ok = "biglog: `seq 1000000` as a step", "<= 1 s", duration <= 1
        results.append(
            Result(
                "biglog",
                label,
                duration,
                "s",
                floor=floor,
                target=target,
                ok=ok,
                samples=durations,
                details={"floor_s": floors, "floor": f"{command} > file (bash -c)"},
            )
        )
    (cwd / "million.log").unlink(missing_ok=True)
    kept = sum(LogChunk.objects.filter(step_run=step, omitted=False).values_list("line_count", flat=True))
    archive = AttemptLog.objects.select_related("artifact").get(step_run=step)
    bound = settings.STEPWISE_LOG_HEAD_LINES + settings.STEPWISE_LOG_TAIL_LINES + logs.CHUNK_LINES
    results.append(
        Result(
            "biglog",
            "biglog: its log lines kept in the database",
            kept,
            "lines",
            target=f"<= {bound:,} (head + tail + a row)",
            ok=kept <= bound,
            details={
                "lines": archive.line_count,
                "whole_log_bytes": archive.size,
                "whole_log_gzip_bytes": archive.artifact.size,
            },
        )
    )
    return results


def scoring(ctx: Context) -> list[Result]:
    """The digits model (train.py's classifier, pickled) deployed and scored one row at a time
    through the API: the scorer's own time per request (target: p50 under 5 ms) and the time
    the web side took, proxy and request log included."""
    import pickle

    from sklearn.datasets import load_digits
    from sklearn.linear_model import SGDClassifier

    from pipelines_ui.api.tokens import token_create
    from runs.registry import deployments, services
    from runs.registry.models import Deployment

    digits = load_digits()
    x = digits.data / 16.0
    model = SGDClassifier(random_state=0).fit(x, digits.target)
    folder = STATE_DIR / "scoring-model"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(model))
    version = services.model_create_from_path(team=ctx.team, name="bench-digits", path=folder, user=ctx.user)
    deployment = Deployment.objects.filter(team=ctx.team, name="bench-digits").first()
    if deployment is None:
        deployment = deployments.deployment_create(team=ctx.team, name="bench-digits", model_version=version)
    elif deployment.model_version_id != version.pk:
        deployments.deployment_swap(deployment=deployment, model_version=version)
    deployer = ctx.procs.start([sys.executable, "manage.py", "stepwise_deployments"], log_name="deployer")

    def serving() -> bool:
        return Deployment.objects.filter(pk=deployment.pk, serving_version=version).exists()

    try:
        wait_until(serving, timeout=60, what="the digits scorer")
        client = Client()
        client.defaults["HTTP_AUTHORIZATION"] = (
            f"Bearer {token_create(user=ctx.user, name='bench', scopes=['run']).secret}"
        )
        url = f"/api/v1/deployments/{ctx.team.name}/bench-digits/score"
        server_ms, web_ms = [], []
        count = ctx.repeats(300, quick=60)
        for i in range(count + 20):
            row = {"inputs": [x[i % len(x)].tolist()]}
            started = time.perf_counter()
            response = client.post(url, row, content_type="application/json")
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"scoring answered {response.status_code}: {response.content[:200]!r}")
            if i >= 20:  # the first requests warm the connections and the model's code paths
                server_ms.append(response.json()["server_ms"])
                web_ms.append(elapsed)
    finally:
        ctx.procs.stop([deployer])
    p50 = percentile(server_ms, 50)
    return [
        Result(
            "scoring", "scoring: one digit, scorer time p50", p50, "ms", target="< 5 ms", ok=p50 < 5, samples=server_ms
        ),
        Result("scoring", "scoring: one digit, scorer time p95", percentile(server_ms, 95), "ms"),
        Result("scoring", "scoring: one digit through the API, p50", percentile(web_ms, 50), "ms", samples=web_ms),
        Result("scoring", "scoring: one digit through the API, p95", percentile(web_ms, 95), "ms"),
    ]


FIGURES: dict[str, Callable[[Context], list[Result]]] = {
    "chain50": chain50,
    "fan50": fan50,
    "reused100": reused100,
    "load": load,
    "live": live,
    "big_dags": big_dags,
    "history": history,
    "recovery": recovery,
    "serve_recovery": serve_recovery,
    "sandbox": sandbox_startup,
    "biglog": big_log,
    "scoring": scoring,
}
# Figures computed by another one's runs.
ALIASES = {"step_latency": "chain50"}
NEEDS_WORKERS = {"chain50", "fan50", "reused100", "load", "live", "recovery", "biglog"}
