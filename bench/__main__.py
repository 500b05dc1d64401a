"""`python -m bench [--quick] [--only NAME[,NAME]]`: measure, print the table, write var/bench/*.json."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from datetime import UTC, datetime

from bench.harness import BENCH_DIR, STATE_DIR, Processes, prepare_environment

ORDER = [
    "chain50",
    "fan50",
    "reused100",
    "load",
    "live",
    "big_dags",
    "history",
    "recovery",
    "serve_recovery",
    "sandbox",
    "biglog",
    "scoring",
]
NAMES = ORDER + ["step_latency"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (about half the time)")
    parser.add_argument(
        "--only",
        default="",
        metavar="NAME[,NAME]",
        help=f"run only these figures: {', '.join(NAMES)} (step_latency comes from chain50)",
    )
    parser.add_argument("--workers", type=int, default=2, help="step workers to start (default 2, as `make run`)")
    args = parser.parse_args(argv)
    wanted = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(wanted) - set(NAMES))
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    args.figures = [n for n in ORDER if not wanted or n in wanted or (n == "chain50" and "step_latency" in wanted)]
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    env = prepare_environment()

    import django

    django.setup()
    from django.core.management import call_command

    from bench import figures, harness, report

    print(f"bench state in {STATE_DIR} (database {env['database_url']}); migrating...", flush=True)
    call_command("migrate", verbosity=0, interactive=False)
    machine = harness.machine()
    print(report.describe_machine(machine), flush=True)

    procs = Processes()
    results: list[report.Result] = []
    failed: list[str] = []
    try:
        user, team = figures.bench_user()
        ctx = figures.Context(quick=args.quick, procs=procs, user=user, team=team)
        if figures.NEEDS_WORKERS & set(args.figures):
            ctx.stack = harness.Stack(procs, workers=args.workers)
            ctx.stack.setup_target()
            ctx.stack.start()
        else:
            harness.Stack(procs, workers=0).setup_target()
        for name in args.figures:
            figure_clock = time.perf_counter()
            print(f"-- {name}...", flush=True)
            try:
                rows = figures.FIGURES[name](ctx)
            except Exception:
                traceback.print_exc()
                failed.append(name)
                continue
            results += rows
            for row in rows:
                print(f"   {row.label}: {row.value:.4g} {row.unit} {report.verdict(row.ok)}", flush=True)
            print(f"   ({time.perf_counter() - figure_clock:.0f} s)", flush=True)
    finally:
        procs.stop()

    options = {"quick": args.quick, "figures": args.figures, "workers": args.workers, "failed": failed}
    path = report.write_json(BENCH_DIR, results=results, machine=machine, options=options, started=started)
    print()
    print(report.table(results, machine))
    print(f"\n{time.perf_counter() - clock:.0f} s in all; written to {path} and {BENCH_DIR / 'latest.json'}")
    if failed:
        print(f"figures that could not be measured: {', '.join(failed)} (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
