"""`python manage.py models create|list`: registered models from the command line.

    python manage.py models create --name N --path P [--flavour mlflow_model|custom_model] [--version V] [--team T]
    python manage.py models list [--team T] [--all]

Exit codes as `data` has them: 0 done, 2 bad input (named on stderr).
"""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from runs.data_assets import DataError
from runs.management.commands.data import Command as DataCommand
from runs.management.commands.data import Invalid
from runs.registry.models import Flavour, ModelVersion
from runs.registry.services import model_create_from_path


class Command(BaseCommand):
    help = "Register and list models (named, versioned, content-hashed files)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        c = sub.add_parser("create", help="register a local file or folder as a new version of a model")
        c.add_argument("--name", required=True)
        c.add_argument("--path", required=True, help="a local file or folder")
        c.add_argument("--flavour", default=Flavour.CUSTOM, choices=Flavour.values)
        c.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
        c.add_argument("--version", default="", help="default: the next number (1, 2, ...)")
        c.add_argument("--team", help="team name (default: the only team)")
        c.add_argument("--description", default="")
        c.add_argument("--user", help="username recorded as the creator")
        ls = sub.add_parser("list", help="list models and their versions")
        ls.add_argument("--team")
        ls.add_argument("--all", action="store_true", help="archived versions too")

    def handle(self, *args, action: str, **options) -> None:
        try:
            if action == "create":
                self._create(**options)
            else:
                self._list(**options)
        except (Invalid, DataError) as exc:
            self.stderr.write(f"error: {exc}")
            raise SystemExit(2) from None

    def _create(self, *, name: str, path: str, flavour: str, version: str, team: str | None, **options) -> None:
        tags = {}
        for item in options.get("tag") or []:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise Invalid(f"--tag {item!r}: use KEY=VALUE")
            tags[key.strip()] = value
        user = None
        if options.get("user"):
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise Invalid(f"no user named {options['user']!r}")
        owner = DataCommand._team(self, team)  # type: ignore[arg-type]
        source = Path(path)
        if not source.exists():
            raise Invalid(f"{path}: no such file or folder")
        created = model_create_from_path(
            team=owner,
            name=name,
            path=source,
            flavour=flavour,
            version=version or None,
            description=options.get("description") or "",
            tags=tags,
            user=user,
        )
        self.stdout.write(
            f"created azureml:{created.model.name}:{created.version} ({created.flavour}, {created.file_count} files, "
            f"{created.size} bytes, sha256 {created.artifact.sha256})"
        )

    def _list(self, *, team: str | None, all: bool, **_options) -> None:
        versions = ModelVersion.objects.select_related("model__team", "artifact").order_by(
            "model__team__name", "model__name", "-seq"
        )
        if team:
            versions = versions.filter(model__team__name=team)
        if not all:
            versions = versions.filter(archived=False)
        for v in versions:
            flag = "\tarchived" if v.archived else ""
            self.stdout.write(
                f"{v.model.team.name}\t{v.model.name}:{v.version}\t{v.flavour}\t{v.file_count}\t{v.size}"
                f"\t{v.artifact.sha256[:12]}{flag}"
            )
