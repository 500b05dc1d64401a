"""Secret run inputs: encrypted at rest, handed to steps by environment, masked in their logs.

A run's secrets live in `Run.secrets` as `{input name: Fernet token}`: the names are plain
(pages say which secrets a run was given), the values are encrypted with a key derived from
SECRET_KEY. Whatever decrypts them (the workers) must share SECRET_KEY with what encrypted
them (the web server, the CLI); keys in SECRET_KEY_FALLBACKS still decrypt after a rotation.
"""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote, quote_plus

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.utils.crypto import salted_hmac
from django.utils.encoding import force_bytes

# Shorter values are not masked: starring every "1" or "abc" in a log would hide most of it
# and point straight at the secret's value.
MIN_MASK_LENGTH = 4
MASK = "***"
_KEY_SALT = "stepwise.runs.secrets"


class SecretError(ValueError):
    """A stored secret cannot be decrypted (SECRET_KEY changed, or the row was tampered with)."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(
            f"secret input '{name}' cannot be decrypted: SECRET_KEY changed since the run started "
            "(keep the old key in SECRET_KEY_FALLBACKS), so give the value again in a new run"
        )


def _fernet_key(secret_key: str) -> bytes:
    digest = salted_hmac(_KEY_SALT, "fernet", secret=force_bytes(secret_key), algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest)


def _fernet() -> MultiFernet:
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([Fernet(_fernet_key(key)) for key in keys])


def secrets_encrypt(values: dict[str, str]) -> dict[str, str]:
    """`{name: token}` for `Run.secrets`."""
    fernet = _fernet()
    return {name: fernet.encrypt(value.encode("utf-8")).decode("ascii") for name, value in values.items()}


def secrets_decrypt(stored: dict[str, str]) -> dict[str, str]:
    """The values of `Run.secrets`; raises SecretError naming the first input that cannot be read."""
    if not stored:
        return {}  # most runs: no keys derived for nothing (a step's start is on the hot path)
    fernet = _fernet()
    values: dict[str, str] = {}
    for name, token in stored.items():
        try:
            values[name] = fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, AttributeError, UnicodeError):
            raise SecretError(name) from None
    return values


def _variants(value: str) -> set[str]:
    """The forms a step is likely to print a secret in: as is, line by line, JSON- and URL-escaped."""
    forms = {value, *value.splitlines(), json.dumps(value)[1:-1], quote(value, safe=""), quote_plus(value)}
    return {form.strip() if form is not value else form for form in forms}


class Masker:
    """Replaces every occurrence of the secrets' values in a log line with ***.

    Works per line, as logs are stored: a multi-line secret (a PEM key) is masked line by line.
    """

    def __init__(self, values: list[str]):
        variants = {v for value in values for v in _variants(value) if len(v) >= MIN_MASK_LENGTH}
        # Longest first, so that a secret containing another is masked whole.
        self.variants = sorted(variants, key=lambda v: (-len(v), v))
        self.pattern = re.compile("|".join(map(re.escape, self.variants))) if self.variants else None

    def __bool__(self) -> bool:
        return self.pattern is not None

    def mask(self, line: str, *, cut: bool = False) -> str:
        """`line` with every secret starred; `cut`: the line was truncated, so a secret may end it half-written."""
        if self.pattern is None:
            return line
        line = self.pattern.sub(MASK, line)
        if cut:
            line = self._mask_cut_tail(line)
        return line

    def _mask_cut_tail(self, line: str) -> str:
        for variant in self.variants:
            for size in range(len(variant) - 1, MIN_MASK_LENGTH - 1, -1):
                if line.endswith(variant[:size]):
                    return line[:-size] + MASK
        return line
