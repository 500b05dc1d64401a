"""`python manage.py pipelines component register|list`: the component library from the command line."""

from __future__ import annotations

from pathlib import Path

from pipelines_ui.components import ComponentError, component_register_file
from pipelines_ui.models import Component, Visibility


def add_component_arguments(sub) -> None:
    p = sub.add_parser("component", help="register and list command and parallel components (azureml:NAME:VERSION)")
    actions = p.add_subparsers(dest="component_action", required=True)
    r = actions.add_parser("register", help="register a command or parallel component YAML file with its code folder")
    r.add_argument("file")
    r.add_argument("--team", help="team name (default: the user's only team)")
    r.add_argument("--name", default="", help="component name (default: the YAML's name)")
    r.add_argument("--version", default="", help="version (default: the YAML's version, else the next number)")
    r.add_argument("--visibility", choices=Visibility.values, default=Visibility.TEAM)
    r.add_argument("--user", help="username recorded as the author (default: the first superuser)")
    ls = actions.add_parser("list", help="list registered components")
    ls.add_argument("--team", help="only this team's components")


def _root(path: Path) -> Path:
    """Where the component's `code` may lie: the current folder when the file is inside it (so that
    `code: ../src` works from a project's top), else the file's own folder."""
    here = Path.cwd().resolve()
    return here if path.resolve().is_relative_to(here) else path.resolve().parent


def component_command(cmd, action: str, **options) -> int:
    """Run `component <action>` for the `pipelines` command `cmd`; ComponentError is bad input."""
    if action == "register":
        path = Path(options["file"])
        if not path.is_file():
            raise ComponentError(f"{path}: no such file")
        author = cmd._user(options.get("user"))
        team = cmd._team(options.get("team"), author)
        registered = component_register_file(
            team=team,
            path=path,
            user=author,
            name=options.get("name") or "",
            version=options.get("version") or "",
            visibility=options.get("visibility") or Visibility.TEAM,
            root=_root(path),
        )
        cmd.stdout.write(registered.message)
        return 0
    components = Component.objects.select_related("team").order_by("team__name", "name", "-created_at")
    if options.get("team"):
        components = components.filter(team__name=options["team"])
    for c in components:
        cmd.stdout.write(f"{c.team.name}\t{c.name}:{c.version}\t{c.visibility}\t{c.display_name}")
    return 0
