"""A team's secrets: values its admins keep for the team's runs (registry tokens, deploy keys).

A run's secret input given no value takes the team secret of the same name. That is how a
schedule, a data trigger, an endpoint call or a plain "Run" starts a pipeline that needs a token
nobody types in. The value is read when the run is created and kept with the run, encrypted,
as a given value is (runs.secrets): steps get it by environment and their logs mask it.

Admins set, replace and delete secrets; every member sees their names and who set them last,
never their values. Whoever may run the team's pipelines can use its secrets in a step, as with
any CI system's secrets: the step can read the value and send it wherever its sandbox reaches.
"""

from __future__ import annotations

from collections.abc import Collection

from django.db import IntegrityError, transaction
from django.views.decorators.debug import sensitive_variables

from pipelines_ui.models import Team, TeamSecret
from runs.secrets import secrets_decrypt, secrets_encrypt
from stepwise.spec.bindings import PORT_NAME

MAX_NAME_LENGTH = 100
# A step gets each secret as one environment variable: large values belong in a datastore.
MAX_VALUE_BYTES = 64 * 1024


class TeamSecretError(ValueError):
    """A name or value that cannot be a team secret; `field` is "name" or "value"."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


class TeamSecretUnreadable(ValueError):
    """A stored value that no longer decrypts (SECRET_KEY changed without a fallback)."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(
            f"the team secret '{name}' cannot be decrypted: SECRET_KEY changed since it was set "
            "(keep the old key in SECRET_KEY_FALLBACKS), so a team admin must set it again"
        )


def name_error(name: str) -> str | None:
    """What is wrong with `name` as a team secret's name, or None: it is the name of the secret
    inputs it feeds, so it follows the rule for input names."""
    if not name:
        return "a name is required"
    if len(name) > MAX_NAME_LENGTH:
        return f"at most {MAX_NAME_LENGTH} characters"
    if not PORT_NAME.fullmatch(name):
        return "letters, digits and underscores, not starting with a digit (the name of the secret input it feeds)"
    return None


def _value_error(value: str) -> str | None:
    if value == "":
        return "a value is required"
    if "\x00" in value:
        # Steps get it as an environment variable, which cannot hold one.
        return "a secret cannot hold a NUL character"
    if len(value.encode("utf-8", "surrogatepass")) > MAX_VALUE_BYTES:
        return f"at most {MAX_VALUE_BYTES // 1024} KiB"
    return None


def team_secrets(team: Team | int):
    """The team's secrets, by name (values stay encrypted: nothing here reads them)."""
    team_id = team if isinstance(team, int) else team.pk
    return TeamSecret.objects.filter(team_id=team_id).select_related("updated_by").defer("value").order_by("name")


def secret_names(team: Team | int) -> set[str]:
    team_id = team if isinstance(team, int) else team.pk
    return set(TeamSecret.objects.filter(team_id=team_id).values_list("name", flat=True))


@sensitive_variables("value", "values", "encrypted")
def secret_set(*, team: Team, name: str, value: str, by) -> tuple[TeamSecret, bool]:
    """Create or replace the team's secret `name`; True when it is new."""
    if error := name_error(name):
        raise TeamSecretError("name", error)
    if error := _value_error(value):
        raise TeamSecretError("value", error)
    try:
        encrypted = secrets_encrypt({name: value})[name]
    except UnicodeError:
        raise TeamSecretError("value", "not valid text (a lone surrogate)") from None
    user = by if getattr(by, "is_authenticated", False) else None
    try:
        with transaction.atomic():
            secret, created = TeamSecret.objects.update_or_create(
                team=team, name=name, defaults={"value": encrypted, "updated_by": user}
            )
    except IntegrityError:
        # Two admins created it at once: the other's insert won, so this one replaces it.
        secret = TeamSecret.objects.get(team=team, name=name)
        secret.value, secret.updated_by, created = encrypted, user, False
        secret.save(update_fields=["value", "updated_by", "updated_at"])
    return secret, created


def secret_delete(*, team: Team, name: str) -> bool:
    """Delete the team's secret `name`; False when there was none. Runs it fed keep their copy."""
    deleted, _ = TeamSecret.objects.filter(team=team, name=name).delete()
    return deleted > 0


@sensitive_variables("values")
def secret_values(team: Team | int, names: Collection[str]) -> dict[str, str]:
    """The values of those of `names` the team has a secret for; raises TeamSecretUnreadable."""
    team_id = team if isinstance(team, int) else team.pk
    stored = dict(TeamSecret.objects.filter(team_id=team_id, name__in=list(names)).values_list("name", "value"))
    values: dict[str, str] = {}
    for name, token in stored.items():
        try:
            values.update(secrets_decrypt({name: token}))
        except ValueError:
            raise TeamSecretUnreadable(name) from None
    return values
