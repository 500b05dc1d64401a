"""`python manage.py data create|list`: data assets from the command line.

    python manage.py data create --name N --path P [--version V] [--team T] [--type uri_folder|uri_file]
    python manage.py data list [--team T] [--all]

Exit codes as `pipelines` has them: 0 done, 2 bad input (named on stderr).
"""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from pipelines_ui.models import Team
from runs.data_assets import DataError, data_create_from_datastore, data_create_from_path
from runs.models import Datastore, DataType, DataVersion


class Invalid(Exception):
    pass


class Command(BaseCommand):
    help = "Create and list data assets (named, versioned, content-hashed data)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        c = sub.add_parser("create", help="register a local file or folder as a new version of a data asset")
        c.add_argument("--name", required=True)
        c.add_argument("--path", required=True, help="a local file or folder, or with --datastore a path inside it")
        c.add_argument("--datastore", help="read --path from this datastore of the team")
        c.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
        c.add_argument("--version", default="", help="default: the next number (1, 2, ...)")
        c.add_argument("--type", default="", choices=["", *DataType.values], help="default: from the path")
        c.add_argument("--team", help="team name (default: the only team)")
        c.add_argument("--description", default="")
        c.add_argument("--user", help="username recorded as the creator")
        ls = sub.add_parser("list", help="list data assets and their versions")
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

    def _team(self, name: str | None) -> Team:
        if name:
            team = Team.objects.filter(name=name).first()
            if team is None:
                raise Invalid(f"no team named {name!r}")
            return team
        teams = list(Team.objects.all()[:2])
        if len(teams) != 1:
            raise Invalid("several teams (or none): pass --team")
        return teams[0]

    def _create(self, *, name: str, path: str, version: str, type: str, team: str | None, **options) -> None:
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
        owner = self._team(team)
        if options.get("datastore"):
            store = Datastore.objects.filter(team=owner, name=options["datastore"]).first()
            if store is None:
                raise Invalid(f"team {owner.name} has no datastore named {options['datastore']!r}")
            created = data_create_from_datastore(
                datastore=store,
                path=path,
                name=name,
                type_=type or DataType.URI_FOLDER,
                version=version or None,
                description=options.get("description") or "",
                tags=tags,
                user=user,
            )
        else:
            source = Path(path)
            if not source.exists():
                raise Invalid(f"{path}: no such file or folder")
            created = data_create_from_path(
                team=owner,
                name=name,
                path=source,
                type_=type or (DataType.URI_FILE if source.is_file() else DataType.URI_FOLDER),
                version=version or None,
                description=options.get("description") or "",
                tags=tags,
                user=user,
            )
        self.stdout.write(
            f"created azureml:{created.asset.name}:{created.version} ({created.type}, {created.file_count} files, "
            f"{created.size} bytes, sha256 {created.artifact.sha256})"
        )

    def _list(self, *, team: str | None, all: bool, **_options) -> None:
        versions = DataVersion.objects.select_related("asset__team", "artifact").order_by(
            "asset__team__name", "asset__name", "-seq"
        )
        if team:
            versions = versions.filter(asset__team__name=team)
        if not all:
            versions = versions.filter(archived=False)
        for v in versions:
            flag = "\tarchived" if v.archived else ""
            self.stdout.write(
                f"{v.asset.team.name}\t{v.asset.name}:{v.version}\t{v.type}\t{v.file_count}\t{v.size}"
                f"\t{v.artifact.sha256[:12]}{flag}"
            )
