"""`python manage.py pipelines validate|import|export|run` (design.md, Command line)."""

from __future__ import annotations

import json as jsonlib
import os
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError

from pipelines_ui import team_secrets
from pipelines_ui.component_selectors import component_resolver
from pipelines_ui.components import ComponentError
from pipelines_ui.models import Pipeline, Team
from pipelines_ui.selectors import known_compute_names, unknown_compute_to_default
from pipelines_ui.services import pipeline_import, version_spec_with_files
from pipelines_ui.uploads import UploadError
from runs import gc, services
from runs.artifacts import ArtifactError, artifact_path
from runs.data_assets import data_resolver
from runs.management.component_cli import add_component_arguments, component_command
from runs.models import RUN_TERMINAL, Run, RunState, StepOutput
from runs.specs import version_spec
from stepwise.spec import SECRET_TYPE, SpecError, dump_folder, load_pipeline

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _unapplied_migrations() -> int:
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))


class Invalid(Exception):
    """Bad input: printed to stderr, exit status 2."""


class Command(BaseCommand):
    help = "Validate, import, export and run pipelines (Azure ML CLI v2 pipeline YAML)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        p = sub.add_parser("validate", help="check a pipeline YAML and list errors and warnings")
        p.add_argument("file")
        p.add_argument("--team", help="resolve azureml: components as this team does (default: instance-wide ones)")
        p = sub.add_parser("import", help="import a pipeline YAML as a new pipeline or a new version")
        p.add_argument("file")
        p.add_argument("--team", help="team name (default: the user's only team)")
        p.add_argument("--name", help="pipeline name (default: display_name, else the folder's name)")
        p.add_argument("--user", help="username recorded as the author (default: the first superuser)")
        p = sub.add_parser("export", help="write a pipeline version as a folder")
        p.add_argument("name")
        p.add_argument("--version", type=int)
        p.add_argument("--team")
        p.add_argument("-o", "--output", default=".")
        add_component_arguments(sub)
        p = sub.add_parser("cancel", help="cancel a queued or running run")
        p.add_argument("run_id", type=int)
        p = sub.add_parser("gc", help="remove artifacts that no run references")
        p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
        p = sub.add_parser("run", help="run a pipeline YAML or an imported pipeline")
        p.add_argument("target", help="FILE.yml or the name of an imported pipeline")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a pipeline input value")
        p.add_argument(
            "--secret",
            action="append",
            default=[],
            metavar="NAME[=ENVVAR]",
            help="a secret input's value, read from the environment variable ENVVAR (default: NAME), "
            "so that it stays out of the shell's history",
        )
        p.add_argument("--force-rerun", action="store_true")
        p.add_argument(
            "--force-step",
            action="append",
            default=[],
            metavar="NAME",
            help="execute this step even if it could be reused (repeatable); "
            "its downstream is reused when its outputs come out the same",
        )
        p.add_argument("--timeout", type=int, metavar="SECONDS", help="fail the run if it takes longer")
        p.add_argument("--wait", action="store_true", help="wait for the run to end, streaming progress to stderr")
        p.add_argument("--json", action="store_true", help="print the finished run as JSON on stdout (implies --wait)")
        p.add_argument("--team")
        p.add_argument("--user")

    def handle(self, *args, action: str, **options) -> None:
        try:
            code = getattr(self, f"do_{action}")(**options)
        except DatabaseError:
            # On a database that is not set up yet, every action meets a missing table; say that
            # (checked only then: the check costs the CLI's start-up time).
            if pending := _unapplied_migrations():
                self.stderr.write(
                    f"the database is not set up ({pending} migrations not applied): "
                    "run `make setup` (or `python manage.py migrate`) first"
                )
                sys.exit(EXIT_FAILED)
            raise
        except Invalid as exc:
            self.stderr.write(str(exc))
            sys.exit(EXIT_INVALID)
        except SpecError as exc:
            for problem in exc.problems:
                self.stderr.write(f"{problem.severity}: {problem}")
            sys.exit(EXIT_INVALID)
        except ArtifactError as exc:
            # The artifact store failed (gc, or fetching outputs for --json): say why, not a traceback.
            self.stderr.write(str(exc))
            sys.exit(EXIT_FAILED)
        sys.exit(code or EXIT_OK)

    # ---- helpers ------------------------------------------------------------------
    def _user(self, username: str | None):
        users = get_user_model().objects
        if username:
            user = users.filter(username=username).first()
            if user is None:
                raise Invalid(f"no user named {username!r}")
            return user
        user = users.filter(is_superuser=True).order_by("pk").first()
        if user is None:
            raise Invalid("no user to run as: create one (`make run` does) or pass --user")
        return user

    def _team(self, name: str | None, user) -> Team:
        if name:
            team = Team.objects.filter(name=name).first()
            if team is None:
                raise Invalid(f"no team named {name!r}")
            return team
        teams = list(Team.objects.filter(memberships__user=user)[:2]) or list(Team.objects.all()[:2])
        if len(teams) != 1:
            raise Invalid("several teams (or none): pass --team")
        return teams[0]

    def _load(self, file: str, team: Team | None = None):
        path = Path(file)
        if not path.is_file():
            raise Invalid(f"{file}: no such file")
        return load_pipeline(
            path,
            known_computes=known_compute_names(),
            unknown_compute_to_default=unknown_compute_to_default(),
            resolve_component=component_resolver(team),
            resolve_data=data_resolver(team) if team is not None else None,
        )

    # ---- actions --------------------------------------------------------------------
    def do_validate(self, *, file: str, team: str | None = None, **_options) -> int:
        pipeline, warnings = self._load(file, self._team(team, None) if team else None)
        for problem in warnings:
            self.stderr.write(f"warning: {problem}")
        self.stdout.write(f"{file}: valid pipeline with {len(pipeline.jobs)} steps")
        return EXIT_OK

    def do_import(self, *, file: str, team: str | None, name: str | None, user: str | None, **_options) -> int:
        author = self._user(user)
        chosen = self._team(team, author)
        self._load(file, chosen)  # validate first: nothing is half-imported
        version = pipeline_import(team=chosen, path=Path(file), user=author, name=name)
        self.stdout.write(f"imported {version.pipeline.name} version {version.number}")
        return EXIT_OK

    def do_export(self, *, name: str, version: int | None, team: str | None, output: str, **_options) -> int:
        pipelines = Pipeline.objects.filter(name=name)
        if team:
            pipelines = pipelines.filter(team__name=team)
        found = list(pipelines[:2])
        if len(found) != 1:
            raise Invalid(f"no pipeline named {name!r}" if not found else f"{name!r} is in several teams: pass --team")
        versions = found[0].versions.all()
        chosen = versions.filter(number=version).first() if version else versions.first()
        if chosen is None:
            raise Invalid(f"{name!r} has no version {version}" if version else f"{name!r} has no versions")
        out = Path(output)
        if out.exists() and not out.is_dir():
            raise Invalid(f"{output} is a file: -o takes a folder (it is made if missing)")
        dest = out / name if out.exists() and any(out.iterdir()) else out
        try:
            dump_folder(version_spec_with_files(chosen), dest)
        except OSError as exc:
            raise Invalid(f"cannot write {dest}: {exc.strerror}") from None
        self.stdout.write(f"exported {name} version {chosen.number} to {dest}")
        return EXIT_OK

    def do_component(self, *, component_action: str, **options) -> int:
        try:
            return component_command(self, component_action, **options)
        except (ComponentError, UploadError) as exc:
            raise Invalid(str(exc)) from None

    def do_cancel(self, *, run_id: int, **_options) -> int:
        run = Run.objects.filter(pk=run_id).first()
        if run is None:
            raise Invalid(f"no run #{run_id}")
        if not services.run_cancel(run=run):
            raise Invalid(f"run #{run_id} has already ended ({run.state})")
        self.stdout.write(f"run #{run_id}: cancel requested; running steps stop within seconds")
        return EXIT_OK

    def do_gc(self, *, dry_run: bool, **_options) -> int:
        report = gc.collect(dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        self.stdout.write(
            f"{verb} {len(report.artifacts)} unreferenced artifacts ({report.bytes_freed} bytes) "
            f"and {len(report.orphan_dirs)} orphaned folders"
        )
        for sha in report.artifacts + report.orphan_dirs:
            self.stdout.write(f"  {sha}")
        if report.uploads:
            self.stdout.write(f"{verb} {len(report.uploads)} abandoned data uploads")
        return EXIT_OK

    def do_run(
        self,
        *,
        target: str,
        set: list[str],
        secret: list[str],
        force_rerun: bool,
        force_step: list[str],
        wait: bool,
        json: bool,
        **options,
    ) -> int:
        author = self._user(options.get("user"))
        inputs: dict[str, str] = {}
        for item in set:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise Invalid(f"--set {item!r}: expected KEY=VALUE")
            inputs[key] = value
        # A file's inputs are checked before it is imported: wrong ones leave no pipeline behind.
        # (Not one transaction around both: creating the run downloads its remote inputs, which
        # must not hold the database's write lock.)
        version = self._run_version(
            target, author, options.get("team"), inputs=inputs, secrets=secret, force_steps=force_step
        )
        inputs.update(self._secrets(version_spec(version), given=secret, set_names=inputs.keys()))
        try:
            run = services.run_create(
                version=version,
                user=author,
                inputs=inputs,
                force_rerun=force_rerun,
                force_steps=force_step,
                timeout_s=options.get("timeout"),
            )
        except services.RunInputError as exc:
            raise Invalid(_input_errors(exc)) from None
        except services.PipelineDeleted as exc:
            raise Invalid(str(exc)) from None
        url = f"{settings.STEPWISE_BASE_URL}{run.get_absolute_url()}"
        self.stderr.write(f"run #{run.pk} of {version} started: {url}")
        if not (wait or json):
            return EXIT_OK
        run = self._wait(run)
        if json:
            self.stdout.write(jsonlib.dumps(run_summary(run, url)))
        return EXIT_OK if run.state == RunState.SUCCEEDED else EXIT_FAILED

    def _run_version(
        self, target: str, author, team: str | None, *, inputs: dict, secrets: list[str], force_steps: list[str]
    ):
        """The version `run TARGET` starts: a YAML file imported into the team (once `inputs` and
        `force_steps` fit it), or the latest version of the pipeline of that name (in `team`, which
        a name in several teams needs)."""
        path = Path(target)
        if path.suffix in (".yml", ".yaml") or path.is_file():
            chosen = self._team(team, author)
            spec, _warnings = self._load(target, chosen)
            given = {**inputs, **self._secrets(spec, given=secrets, set_names=inputs.keys(), quiet=True)}
            try:
                services.force_steps_clean(spec, force_steps)
                services.run_inputs_clean(spec, given, team_secret_names=team_secrets.secret_names(chosen))
            except services.RunInputError as exc:
                raise Invalid(_input_errors(exc)) from None
            return pipeline_import(team=chosen, path=path, user=author)
        pipelines = Pipeline.objects.filter(name=target).select_related("latest_version", "team")
        if team:
            pipelines = pipelines.filter(team__name=team)
        found = list(pipelines[:2])
        if not found:
            where = f" in team {team!r}" if team else ""
            raise Invalid(f"{target}: neither a YAML file nor a pipeline{where}")
        if len(found) > 1:
            raise Invalid(f"{target!r} is in several teams: pass --team")
        if found[0].latest_version is None:
            raise Invalid(f"{target!r} has no versions")
        return found[0].latest_version

    def _secrets(self, spec, *, given: list[str], set_names, quiet: bool = False) -> dict[str, str]:
        """`--secret NAME[=ENVVAR]` values; warns about secrets given with --set (unless `quiet`)."""
        secret_inputs = {name for name, decl in spec.inputs.items() if decl.type == SECRET_TYPE}
        for name in sorted(secret_inputs & set(set_names)) if not quiet else ():
            self.stderr.write(
                f"warning: --set {name}=... leaves the secret in your shell's history; use --secret {name}=ENVVAR"
            )
        values: dict[str, str] = {}
        for item in given:
            name, _, variable = item.partition("=")
            variable = variable or name
            if name not in secret_inputs:
                kind = f"an input of type {spec.inputs[name].type}" if name in spec.inputs else "no such input"
                raise Invalid(f"--secret {name}: {kind}; --secret is for inputs of type secret (use --set)")
            if variable not in os.environ:
                raise Invalid(f"--secret {item}: the environment variable {variable} is not set")
            values[name] = os.environ[variable]
        return values

    def _wait(self, run: Run) -> Run:
        seen: dict[str, tuple[str, int]] = {}
        while True:
            run.refresh_from_db()
            for step in run.steps.all():
                key = (step.state, step.attempt)
                if seen.get(step.name) != key:
                    seen[step.name] = key
                    detail = f" ({step.reason})" if step.reason else ""
                    self.stderr.write(f"  {step.name}: {step.state}{detail}")
            if run.state in RUN_TERMINAL:
                self.stderr.write(f"run #{run.pk} {run.state}" + (f": {run.reason}" if run.reason else ""))
                return run
            time.sleep(0.2)


def run_summary(run: Run, url: str) -> dict:
    """The `run --json` object of design.md."""
    outputs: dict[str, dict[str, str]] = {}
    for out in StepOutput.objects.filter(step_run__run=run).select_related("artifact", "step_run"):
        outputs.setdefault(out.step_run.name, {})[out.name] = str(artifact_path(out.artifact, out.name))
    steps = {}
    for step in run.steps.all():
        steps[step.name] = {
            "state": step.state,
            "reused_from": step.reused_from.run_id if step.reused_from_id else None,
            "attempts": step.attempt,
            "started_at": step.started_at.isoformat() if step.started_at else None,
            "finished_at": step.finished_at.isoformat() if step.finished_at else None,
            "duration_s": step.duration_s or 0.0,
            "outputs": outputs.get(step.name, {}),
        }
    return {"run": run.pk, "state": run.state, "url": url, "steps": steps}


# Errors the service keys by a run option rather than an input, named as this command spells the option.
_OPTION_FLAGS = {"force_steps": "--force-step"}


def _input_errors(exc) -> str:
    return "; ".join(f"{_OPTION_FLAGS.get(k, f'input {k}')}: {v}" for k, v in exc.errors.items())
