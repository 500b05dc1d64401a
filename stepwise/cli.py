"""`stepwise`: `manage.py pipelines` against a server, through the REST API (design.md, remote CLI).

Exit status as `manage.py pipelines`: 0 done (a run that succeeded), 1 a run that failed or was
canceled (or a server that cannot be reached), 2 invalid input (named on stderr).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from stepwise.client import TERMINAL, Client, Run, StepwiseError, ValidationError, problem_text, write_config
from stepwise.spec import SpecError
from stepwise.spec.bindings import coerce_literal

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
RUN_JSON_KEYS = ("run", "state", "url", "steps")


class Invalid(Exception):
    """Bad input: printed to stderr, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stepwise", description="Stepwise pipelines against a server.")
    parser.add_argument("--url", help="the server (default: STEPWISE_URL, else `stepwise login`'s)")
    parser.add_argument("--token", help="an API token (default: STEPWISE_TOKEN, else `stepwise login`'s)")
    sub = parser.add_subparsers(dest="action", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
        return p

    p = command("login", "store the server's URL and a token in your config (mode 0600)")
    p.add_argument("server_url")
    p.add_argument("--with-token", dest="login_token", help="the token (default: STEPWISE_TOKEN, else asked)")
    p = command("validate", "check a pipeline YAML as the server would import it; list errors and warnings")
    p.add_argument("file")
    p.add_argument("--team", help="the team whose registered components the pipeline may use")
    p = command("import", "import a pipeline YAML (with its folder) as a new pipeline or a new version")
    p.add_argument("file")
    p.add_argument("--team", help="the team to import into (default: the only team you may import into)")
    p.add_argument("--name", help="pipeline name (default: display_name, else name)")
    p = command("export", "write a pipeline version as a folder")
    p.add_argument("pipeline", help="the pipeline's name or id")
    p.add_argument("--version", type=int)
    p.add_argument("--team")
    p.add_argument("-o", "--output", default=".")
    p = command("run", "run a pipeline YAML (imported first) or an imported pipeline")
    p.add_argument("target", help="FILE.yml, or an imported pipeline's name or id")
    p.add_argument(
        "--team", help="the team to import FILE.yml into (default: the only one you may), or to find NAME in"
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a pipeline input value")
    p.add_argument("--force-rerun", action="store_true")
    p.add_argument(
        "--force-step", action="append", default=[], metavar="NAME", help="execute this step even if it could be reused"
    )
    p.add_argument("--wait", action="store_true", help="wait for the run to end, streaming progress to stderr")
    p = command("runs", "list runs, newest first")
    p.add_argument("--pipeline", type=int)
    p.add_argument("--state")
    p.add_argument("--limit", type=int, default=20)
    p = command("logs", "print a step's log")
    p.add_argument("run_id", type=int)
    p.add_argument("step")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the step ends")
    p = command("cancel", "cancel a queued or running run")
    p.add_argument("run_id", type=int)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cli = _Cli(args)
    try:
        code = getattr(cli, "do_" + args.action)()
    except Invalid as exc:
        return cli.fail(str(exc), [], EXIT_INVALID)
    except SpecError as exc:
        problems = [_problem_dict(p) for p in exc.problems if p.severity == "error"]
        for problem in exc.problems:
            print(f"{problem.severity}: {problem}", file=sys.stderr)
        return cli.fail("the pipeline is invalid", problems, EXIT_INVALID, printed=True)
    except StepwiseError as exc:
        # The server said no to the input (400, 404, 409) or the caller (401, 403): invalid input.
        code = EXIT_FAILED if exc.status == 0 or exc.status >= 500 or exc.status == 429 else EXIT_INVALID
        return cli.fail(exc.detail, exc.errors, code, text=str(exc))
    except KeyboardInterrupt:
        return EXIT_FAILED
    return code


def _problem_dict(p) -> dict:
    return {"file": p.file, "job": p.job, "field": p.field, "line": p.line, "message": p.message}


class _Cli:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.args.url, self.args.token)
        return self._client

    def out(self, text: str, obj: object) -> None:
        print(json.dumps(obj, default=str) if self.args.json else text)

    def fail(self, message: str, errors: list[dict], code: int, *, text: str = "", printed: bool = False) -> int:
        if not printed:
            print(text or message, file=sys.stderr)
        if self.args.json:
            print(json.dumps({"error": message, "errors": errors}))
        return code

    # ---- actions --------------------------------------------------------------------
    def do_login(self) -> int:
        token = self.args.login_token or os.environ.get("STEPWISE_TOKEN") or getpass.getpass("API token: ")
        url = self.args.server_url.rstrip("/")
        teams = Client(url, token).teams()  # a wrong URL or token fails here, before anything is stored
        path = write_config(url=url, token=token)
        self.out(f"logged in to {url} ({len(teams)} teams); saved in {path}", {"url": url, "config": str(path)})
        return EXIT_OK

    def do_validate(self) -> int:
        path = Path(self.args.file)
        if not path.is_file():
            raise Invalid(f"{self.args.file}: no such file")
        try:
            client = self.client
        except StepwiseError:
            return self._validate_here(path)
        checked = self._naming_my_file(lambda: client.pipelines.validate(path, team=self.args.team))
        warnings = self._as_given(checked["warnings"])
        for problem in warnings:
            print(f"warning: {problem_text(problem).strip()}", file=sys.stderr)
        self.out(
            f"{self.args.file}: valid pipeline with {len(checked['steps'])} steps",
            {"file": self.args.file, "valid": True, "steps": checked["steps"], "warnings": warnings},
        )
        return EXIT_OK

    def _naming_my_file(self, call: Callable[[], dict]) -> dict:
        try:
            return call()
        except ValidationError as exc:
            raise ValidationError(exc.detail, status=exc.status, errors=self._as_given(exc.errors)) from None

    def _as_given(self, problems: list[dict]) -> list[dict]:
        """The server names the files it was sent: the YAML as the upload's pipeline.yml and, where
        the client sent the pipeline as it reads it (its steps as components/JOB.yml), lines of
        those files. The problems name the user's file instead, without such lines."""
        rewritten = _reads_here(Path(self.args.file))
        given = []
        for p in problems:
            name = str(p.get("file") or "")
            if name == "pipeline.yml" or (rewritten and name.startswith("components/")):
                p = {**p, "file": self.args.file, "line": None if rewritten else p.get("line")}
            given.append(p)
        return given

    def _validate_here(self, path: Path) -> int:
        """No server configured: the checks that need none (compute names and registered
        components are the server's to check)."""
        from stepwise.spec import load_pipeline

        spec, warnings = load_pipeline(path)
        print(
            "note: no server configured, so checked here only: not its compute targets or components", file=sys.stderr
        )
        for problem in warnings:
            print(f"warning: {problem}", file=sys.stderr)
        self.out(
            f"{self.args.file}: valid pipeline with {len(spec.jobs)} steps",
            {
                "file": self.args.file,
                "valid": True,
                "steps": list(spec.jobs),
                "warnings": [_problem_dict(w) for w in warnings],
            },
        )
        return EXIT_OK

    def do_import(self) -> int:
        path = Path(self.args.file)
        if not path.is_file():
            raise Invalid(f"{self.args.file}: no such file")
        team = self._import_team()
        created = self._naming_my_file(lambda: self.client.pipelines.create(path, team=team, name=self.args.name))
        self.out(f"imported {created['name']} version {created['version']}", created)
        return EXIT_OK

    def _import_team(self) -> str:
        """--team, else the only team the caller may import into, as `manage.py pipelines import`
        picks the user's only team."""
        if self.args.team:
            return self.args.team
        teams = self.client.writable_teams()
        if not teams:
            raise Invalid("no team to import into: you are an editor or admin of none")
        if len(teams) > 1:
            raise Invalid(f"several teams to import into ({', '.join(teams)}): pass --team")
        return teams[0]

    def _pipeline(self, ref: str, team: str | None) -> dict:
        if ref.isdigit():
            return self.client.pipelines.get(int(ref))
        return self.client.pipelines.find(ref, team=team)

    def do_export(self) -> int:
        found = self._pipeline(self.args.pipeline, self.args.team)
        out = Path(self.args.output)
        if out.exists() and not out.is_dir():
            raise Invalid(f"{self.args.output} is a file: -o takes a folder (it is made if missing)")
        dest = out / found["name"] if out.exists() and any(out.iterdir()) else out
        number = self.args.version or found["version"]
        try:
            self.client.pipelines.export(found["id"], dest, version=number)
        except OSError as exc:
            raise Invalid(f"cannot write {dest}: {exc.strerror}") from None
        self.out(
            f"exported {found['name']} version {number} to {dest}",
            {"pipeline": found["id"], "name": found["name"], "version": number, "path": str(dest)},
        )
        return EXIT_OK

    def do_run(self) -> int:
        target = Path(self.args.target)
        if target.suffix in (".yml", ".yaml", ".zip") or target.is_file():
            if not target.is_file():
                raise Invalid(f"{self.args.target}: no such file")
            team = self._import_team()
            # The inputs are checked against the file before it is imported: read here, or by the
            # server's validation (a zip; registered components are the server's to resolve), which
            # stores nothing. A wrong --set leaves no pipeline behind.
            declared = self._declared_in_file(target) if _reads_here(target) else self._declared_by_server(target, team)
            inputs = self._inputs(declared)
            created = self.client.pipelines.create(target, team=team)
            pipeline_id, version = created["id"], created["version"]
        else:
            found = self._pipeline(self.args.target, self.args.team)
            pipeline_id, version = found["id"], found["version"]
            inputs = self._inputs(self._declared_on_server(pipeline_id, version))
        run = self.client.runs.create(
            pipeline_id,
            inputs=inputs,
            version=version,
            force_rerun=self.args.force_rerun,
            force_steps=self.args.force_step,
        )
        print(f"run #{run.id} of pipeline {pipeline_id} version {version} started: {run.url}", file=sys.stderr)
        if not (self.args.wait or self.args.json):
            return EXIT_OK
        run = self._wait(run)
        if self.args.json:
            # The object `manage.py pipelines run --json` prints, key for key (design.md).
            print(json.dumps({key: run.data.get(key) for key in RUN_JSON_KEYS}, default=str))
        return EXIT_OK if run.state == "succeeded" else EXIT_FAILED

    def _declared_on_server(self, pipeline_id: int, version: int) -> Callable[[], dict]:
        return lambda: self.client.pipelines.version(pipeline_id, version).get("spec", {}).get("inputs", {})

    def _declared_by_server(self, path: Path, team: str) -> Callable[[], dict]:
        return lambda: self.client.pipelines.validate(path, team=team).get("inputs", {})

    def _declared_in_file(self, path: Path) -> Callable[[], dict]:
        def declared() -> dict:
            from stepwise.spec import load_pipeline, to_json

            spec, _warnings = load_pipeline(path)
            return to_json(spec).get("inputs", {})

        return declared

    def _inputs(self, declared: Callable[[], dict]) -> dict:
        """`--set` values typed as the pipeline declares them ("3" for an integer input is 3);
        `declared()`, the pipeline's inputs, is asked only when there are values to type."""
        pairs = {}
        for item in self.args.set:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise Invalid(f"--set {item!r}: expected KEY=VALUE")
            pairs[key] = value
        if not pairs:
            return {}
        inputs = declared()
        unknown = sorted(set(pairs) - set(inputs))
        if unknown:
            raise Invalid(
                f"--set {unknown[0]}: the pipeline has no such input (its inputs: {', '.join(inputs) or 'none'})"
            )
        return {key: _typed(key, value, inputs[key] or {}) for key, value in pairs.items()}

    def _wait(self, run: Run) -> Run:
        seen: dict[str, tuple[str, int]] = {}
        while True:
            run.refresh()
            for name, step in run.steps.items():
                key = (step.state, step.attempts)
                if seen.get(name) != key:
                    seen[name] = key
                    reused = f" (from run #{step.reused_from})" if step.reused_from else ""
                    print(f"  {name}: {step.state}{reused}", file=sys.stderr)
            if run.state in TERMINAL:
                reason = run.data.get("reason") or ""
                print(f"run #{run.id} {run.state}" + (f": {reason}" if reason else ""), file=sys.stderr)
                return run
            time.sleep(0.3)

    def do_runs(self) -> int:
        rows = self.client.runs.list(pipeline=self.args.pipeline, state=self.args.state, limit=self.args.limit)
        if self.args.json:
            print(json.dumps({"runs": rows}, default=str))
            return EXIT_OK
        if not rows:
            print("no runs yet: start one with `stepwise run FILE.yml --team TEAM`")
        for row in rows:
            print(
                f"#{row['id']:<6} {row['state']:<10} pipeline {row['pipeline']} v{row['version']}  {row['created_at']}"
            )
        return EXIT_OK

    def do_logs(self) -> int:
        run = self.client.runs.get(self.args.run_id)
        if self.args.step not in run.steps:
            raise Invalid(f"run #{run.id} has no step {self.args.step!r} (steps: {', '.join(run.steps) or 'none'})")
        lines = []
        for line in run.logs(self.args.step, follow=self.args.follow):
            if self.args.json:
                lines.append(line)
            else:
                print(line, flush=True)
        if self.args.json:
            print(json.dumps({"run": run.id, "step": self.args.step, "lines": lines}))
        return EXIT_OK

    def do_cancel(self) -> int:
        run = self.client.runs.cancel(self.args.run_id)
        self.out(f"run #{run.id}: cancel requested; running steps stop within seconds", run.data)
        return EXIT_OK


def _reads_here(path: Path) -> bool:
    """Whether the pipeline YAML at `path` loads without the server (what the client then uploads
    is the pipeline as read, not the folder as written)."""
    if path.suffix.lower() == ".zip":
        return False
    from stepwise.spec import load_pipeline

    try:
        load_pipeline(path)
    except SpecError:
        return False
    return True


def _typed(key: str, value: str, decl: dict) -> object:
    try:
        return coerce_literal(
            decl.get("type", "string"), value, enum=decl.get("enum"), minimum=decl.get("min"), maximum=decl.get("max")
        )
    except ValueError as exc:
        raise Invalid(f"--set {key}: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
