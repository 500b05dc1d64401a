"""`manage.py stepwise_token create USER [--team T] [--scope S ...] [--expires-days N]`: prints only
the token on stdout (for scripts: `TOKEN=$(manage.py stepwise_token create ci --scope run)`).
`list USER` and `revoke ID` manage them."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from pipelines_ui.api import tokens
from pipelines_ui.api.models import ApiToken, Scope
from pipelines_ui.models import Team


class Command(BaseCommand):
    help = "Create, list and revoke API tokens."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a token and print it (only it) on stdout")
        # Optional to argparse only: `--scope read run alice` reads alice as a scope, and _create
        # takes it back (both `create alice --scope read run` and `create --scope run alice` work).
        create.add_argument("user", nargs="?", help="the username the token acts as")
        create.add_argument("--name", default="", help="what uses it (default: created from the command line)")
        create.add_argument("--team", help="limit the token to this team (its name)")
        create.add_argument(
            "--scope",
            action="extend",
            nargs="+",
            dest="scopes",
            help="one or more, `--scope read run` or repeated (default: read)",
        )
        create.add_argument("--expires-days", type=int, help="expire after N days (default: never)")
        listing = sub.add_parser("list", help="a user's tokens")
        listing.add_argument("user")
        revoke = sub.add_parser("revoke", help="revoke a token by its id (see list)")
        revoke.add_argument("id", type=int)

    def handle(self, *args, action: str, **options):
        getattr(self, f"_{action}")(**options)

    def _user(self, username: str):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        return user

    def _create(self, *, user: str | None, name: str, team: str | None, scopes: list[str] | None, expires_days, **_):
        scopes = list(scopes or [])
        if user is None and scopes and scopes[-1] not in Scope.values:
            user = scopes.pop()
        if user is None:
            raise CommandError("give the username the token acts as: stepwise_token create USER")
        unknown = [s for s in scopes if s not in Scope.values]
        if unknown:
            raise CommandError(f"unknown scope {unknown[0]!r}: choose from {', '.join(Scope.values)}")
        owner = self._user(user)
        team_obj = None
        if team is not None:
            team_obj = Team.objects.filter(name=team).first()
            if team_obj is None:
                raise CommandError(f"no team named {team!r}")
        try:
            new = tokens.token_create(
                user=owner,
                name=name or "created from the command line",
                scopes=scopes or [Scope.READ],
                team=team_obj,
                expires_days=expires_days,
            )
        except tokens.TokenError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(new.secret)

    def _list(self, *, user: str, **_):
        for t in tokens.user_tokens(self._user(user)):
            state = "revoked" if t.revoked_at else ("active" if t.is_active else "expired")
            team = t.team.name if t.team else "*"
            expires = t.expires_at.date().isoformat() if t.expires_at else "never"
            self.stdout.write(
                f"{t.pk}\t{t.name}\t{t.prefix}…\tteam={team}\tscopes={','.join(t.scopes)}\texpires={expires}\t{state}"
            )

    def _revoke(self, *, id: int, **_):
        token = ApiToken.objects.filter(pk=id).first()
        if token is None:
            raise CommandError(f"no token with id {id}")
        if not tokens.token_revoke(user=token.user, token_id=id):
            raise CommandError(f"token {id} was already revoked")
        self.stderr.write(f"revoked token {id} ({token.name})")
