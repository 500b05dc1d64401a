"""Model fields."""

from __future__ import annotations

import json

from django.db import models


class OrderedJSONField(models.TextField):
    """JSON kept as text, so that objects keep their key order on every database.

    PostgreSQL's jsonb (what JSONField uses) reorders object keys, and a pipeline's
    steps, inputs and outputs are shown, run and exported in the order they were written.
    """

    def from_db_value(self, value, expression, connection):
        return None if value is None else json.loads(value)

    def to_python(self, value):
        if value is None or not isinstance(value, str):
            return value
        return json.loads(value)

    def get_prep_value(self, value):
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def value_to_string(self, obj) -> str:
        return self.get_prep_value(self.value_from_object(obj))
