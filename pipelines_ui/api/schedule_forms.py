"""The schedule form: timing, catch-up, and the pipeline's inputs as typed fields (as the run form)."""

from __future__ import annotations

from django import forms
from django.utils.html import format_html, format_html_join

from pipelines_ui.api import schedules
from pipelines_ui.api.models import Catchup, Endpoint
from pipelines_ui.models import Pipeline
from runs.forms import FIELD_PREFIX
from runs.forms import _field as input_field
from runs.specs import version_spec
from stepwise.spec.model import DATA_TYPES, SECRET_TYPE

PIPELINE_TARGET = "pipeline"

CRON_HELP = format_html_join(
    "; ",
    "<code>{}</code> {}",
    schedules.CRON_EXAMPLES,
)


class ScheduleForm(forms.Form):
    name = forms.CharField(max_length=100)
    target = forms.ChoiceField(label="Runs", help_text="An endpoint's schedule follows its default version.")
    kind = forms.ChoiceField(
        label="Timing",
        choices=[("cron", "Cron expression, in a time zone"), ("interval", "Every N seconds")],
        initial="cron",
        widget=forms.RadioSelect,
    )
    cron = forms.CharField(
        required=False,
        max_length=200,
        help_text=format_html("Five fields: minute hour day-of-month month day-of-week. For example: {}.", CRON_HELP),
    )
    timezone = forms.ChoiceField(
        label="Time zone", initial="UTC", help_text="Cron times are wall-clock times here, daylight saving included."
    )
    interval_seconds = forms.IntegerField(
        required=False,
        label="Interval (seconds)",
        min_value=schedules.MIN_INTERVAL_S,
        max_value=schedules.MAX_INTERVAL_S,
        help_text=f"At least {schedules.MIN_INTERVAL_S} s; counted from the schedule's creation.",
    )
    catchup = forms.ChoiceField(
        label="After downtime",
        choices=Catchup.choices,
        initial=Catchup.LATEST,
        help_text="Fire times missed while no scheduler ran.",
    )
    enabled = forms.BooleanField(required=False, initial=True, label="Enabled")

    def __init__(self, *args, pipeline: Pipeline, **kwargs):
        super().__init__(*args, **kwargs)
        self.pipeline = pipeline
        self.endpoints = {
            str(e.pk): e for e in Endpoint.objects.filter(pipeline=pipeline).select_related("default_version")
        }
        self.fields["target"].choices = [(PIPELINE_TARGET, f"{pipeline.name}, its latest version")] + [
            (pk, f"endpoint {e.name} (default v{e.default_version.number})") for pk, e in self.endpoints.items()
        ]
        self.fields["timezone"].choices = [(name, name) for name in schedules.timezone_names()]
        # Not set by a schedule: data inputs keep their defaults, secret inputs take the team's secret.
        self.skipped_inputs: list[str] = []
        self.secret_inputs: list[str] = []
        if pipeline.latest_version is not None:
            for name, decl in version_spec(pipeline.latest_version).inputs.items():
                if decl.type == SECRET_TYPE:
                    self.secret_inputs.append(name)
                    continue
                if decl.data is not None or decl.type in DATA_TYPES:
                    self.skipped_inputs.append(name)
                    continue
                field = input_field(decl)
                field.label = name
                self.fields[FIELD_PREFIX + name] = field

    def input_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name.startswith(FIELD_PREFIX)]

    def timing_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in ("cron", "timezone", "interval_seconds")]

    def target_objects(self) -> tuple[Pipeline | None, Endpoint | None]:
        choice = self.cleaned_data.get("target")
        if choice in self.endpoints:
            return None, self.endpoints[choice]
        return self.pipeline, None

    def clean(self) -> dict:
        cleaned = super().clean()
        raw: dict[str, object] = {}
        for key, value in cleaned.items():
            if key.startswith(FIELD_PREFIX) and (isinstance(value, bool) or value not in (None, "")):
                raw[key[len(FIELD_PREFIX) :]] = value
        cron = cleaned.get("kind") == "cron"
        if self.errors:
            return cleaned
        pipeline, endpoint = self.target_objects()
        try:
            cleaned["settings"] = schedules.settings_clean(
                schedules.Settings(
                    name=cleaned.get("name", ""),
                    cron=cleaned.get("cron", "") if cron else "",
                    timezone=cleaned.get("timezone") or "UTC",
                    interval_seconds=None if cron else cleaned.get("interval_seconds"),
                    inputs=raw,
                    enabled=cleaned.get("enabled", False),
                    catchup=cleaned.get("catchup", Catchup.LATEST),
                ),
                version=schedules.target_version(pipeline=pipeline, endpoint=endpoint),
            )
        except schedules.ScheduleError as exc:
            self.add_schedule_errors(exc)
        return cleaned

    def add_schedule_errors(self, exc: schedules.ScheduleError) -> None:
        for key, message in exc.errors.items():
            name = FIELD_PREFIX + key.removeprefix("inputs.") if key.startswith("inputs.") else key
            if name == "cron" and "interval" in message and self.cleaned_data.get("kind") == "interval":
                name = "interval_seconds"
                message = "give the interval in seconds"
            if name in self.fields:
                self.add_error(name, message)
            else:
                self.add_error(None, f"{key}: {message}")
