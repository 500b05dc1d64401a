"""The run form, generated from a pipeline version's inputs."""

from __future__ import annotations

from collections.abc import Collection

from django import forms
from django.utils.html import escape

from runs.services import RunInputError, run_inputs_clean
from stepwise.spec.bindings import INTEGER_MAX, INTEGER_MIN, MAX_TIMEOUT_S
from stepwise.spec.model import DATA_TYPES, SECRET_TYPE, InputDecl
from stepwise.spec.model import Pipeline as PipelineSpec

FIELD_PREFIX = "in_"


def _help(decl: InputDecl, *, team_secret: bool = False) -> str:
    parts = [decl.type + (", optional" if decl.optional else "")]
    if decl.type == SECRET_TYPE:
        parts.append("never shown or logged; steps read it from their environment")
        if team_secret:
            parts.append("empty: the team's secret of this name")
    if decl.min is not None or decl.max is not None:
        low = "" if decl.min is None else f"{decl.min} ≤ "
        high = "" if decl.max is None else f" ≤ {decl.max}"
        parts.append(f"{low}value{high}")
    if decl.description:
        parts.append(decl.description)
    # Forms render help text as HTML (Django's and django-bootstrap4's templates): the
    # description is the pipeline author's text.
    return escape(" · ".join(parts))


def _field(decl: InputDecl, *, team_secret: bool = False) -> forms.Field:
    # Literal fields stay strings: `run_inputs_clean` is the one place that types them, so the
    # form, the CLI and the API reject the same values with the same messages.
    initial = decl.default
    common = {"required": False, "help_text": _help(decl, team_secret=team_secret)}
    if decl.type == SECRET_TYPE:
        # Never rendered back into the page, not even after a form error; not kept by the browser.
        widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
        return forms.CharField(widget=widget, strip=False, **common)
    if decl.type == "boolean":
        return forms.BooleanField(initial=bool(initial), **common)
    if decl.enum:
        choices = [(v, v) for v in decl.enum]
        if decl.optional or decl.default is None:
            choices.insert(0, ("", "—"))
        return forms.ChoiceField(choices=choices, initial=initial, **common)
    if decl.type == "integer":
        low = INTEGER_MIN if decl.min is None else decl.min
        high = INTEGER_MAX if decl.max is None else decl.max
        widget = forms.NumberInput(attrs={"step": "1", "min": low, "max": high})
    elif decl.type == "number":
        bounds = {k: v for k, v in (("min", decl.min), ("max", decl.max)) if v is not None}
        widget = forms.NumberInput(attrs={"step": "any", **bounds})
    else:
        widget = forms.TextInput()
    return forms.CharField(initial="" if initial is None else str(initial), widget=widget, strip=True, **common)


class RunForm(forms.Form):
    # The run's options, after its inputs; a form that only asks for inputs drops them.
    OPTION_FIELDS = ("force_rerun", "force_steps", "timeout_s")

    force_rerun = forms.BooleanField(
        required=False,
        label="Force rerun",
        help_text="Execute every step, even those whose results could be reused from earlier runs.",
    )
    # Choices are the version's steps (set in __init__).
    force_steps = forms.MultipleChoiceField(
        required=False,
        label="Force these steps",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"invalid_choice": "no step named '%(value)s'"},
        help_text="Each chosen step executes even if it could be reused; the steps after it are reused "
        "when its outputs come out the same.",
    )
    timeout_s = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_TIMEOUT_S,
        error_messages={"max_value": f"A timeout of at most {MAX_TIMEOUT_S} seconds (a year)."},
        label="Timeout (seconds)",
        help_text="Fail the run, stopping its steps, if it takes longer. Empty: no limit.",
    )

    def __init__(self, *args, spec: PipelineSpec, team_secret_names: Collection[str] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.spec = spec
        self.team_secret_names = team_secret_names
        self.data_inputs: list[tuple[str, InputDecl]] = []
        literal_fields = {}
        for name, decl in spec.inputs.items():
            if decl.data is not None or decl.type in DATA_TYPES:
                self.data_inputs.append((name, decl))
                continue
            field = _field(decl, team_secret=decl.type == SECRET_TYPE and name in team_secret_names)
            field.label = name
            literal_fields[FIELD_PREFIX + name] = field
        self.fields["force_steps"].choices = [
            (name, name if not step.display_name or step.display_name == name else f"{name} · {step.display_name}")
            for name, step in spec.jobs.items()
        ]
        # Inputs first, then the run options.
        options = {name: self.fields[name] for name in self.OPTION_FIELDS}
        self.fields = {**literal_fields, **options}

    def input_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name.startswith(FIELD_PREFIX)]

    def clean(self) -> dict:
        cleaned = super().clean()
        raw: dict[str, object] = {}
        for key, value in cleaned.items():
            if not key.startswith(FIELD_PREFIX):
                continue
            name = key[len(FIELD_PREFIX) :]
            if isinstance(value, bool):
                raw[name] = value
            elif value not in (None, ""):
                raw[name] = value
        try:
            cleaned["inputs"] = run_inputs_clean(self.spec, raw, team_secret_names=self.team_secret_names)
        except RunInputError as exc:
            self.add_input_errors(exc)
        return cleaned

    def add_input_errors(self, exc: RunInputError) -> None:
        for name, message in exc.errors.items():
            key = FIELD_PREFIX + name
            if key in self.fields:
                self.add_error(key, message)
            elif name in self.OPTION_FIELDS and name in self.fields:
                # The service's word on a run option (force_steps), by the option's name.
                self.add_error(name, message)
            else:
                self.add_error(None, f"{name}: {message}")
