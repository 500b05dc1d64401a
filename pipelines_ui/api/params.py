"""Query parameters read the same way by every list endpoint."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import QueryDict
from rest_framework.exceptions import ValidationError

# A number parameter as the schema declares it: digits, or nothing (what one() reads as absent).
# Not `integer` with `allowEmptyValue`: schemathesis reads that as "an integer or the empty string"
# (an anyOf), and the schema conformance test then failed now and then (d3589cb). One string
# schema leaves no second branch: every value it refuses holds a non-digit, which is a 400.
DIGITS = {"type": "string", "pattern": "^[0-9]*$"}


def one(params: QueryDict, name: str) -> str | None:
    """The query parameter `name`, None when absent or empty; a 400 when it is given more than once
    (which value would count is nobody's guess: Django would take the last one).

    Empty counts as absent because a client that builds its query from optional form fields (an
    HTML GET form) sends `?pipeline=&state=` to mean "no filter", as Django's admin reads it."""
    values = params.getlist(name)
    if len(values) > 1:
        raise ValidationError({name: f"given {len(values)} times: give it once"})
    return values[0] if values and values[0] != "" else None


def positive_int(value: str | None, name: str, *, max_digits: int = 10) -> int | None:
    """None when absent; a 400 naming the parameter when it is not a plain positive integer."""
    if value is None:
        return None
    # str.isdigit() also accepts digits such as '²', which int() refuses.
    if not (value.isascii() and value.isdigit()) or len(value) > max_digits:
        raise ValidationError({name: "a positive integer"})
    return int(value)


def text_equals(qs: QuerySet, field: str, value: str) -> QuerySet:
    # A name never holds NUL (PostgreSQL text cannot), so such a value names nothing rather than
    # reaching the database, which would refuse the query.
    return qs.none() if "\x00" in value else qs.filter(**{field: value})
