"""Forms of the authoring pages, and the translation between them and spec dataclasses."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import PurePosixPath

from django import forms
from django.core.exceptions import ValidationError

from pipelines_ui.models import Pipeline
from pipelines_ui.selectors import compute_choices, default_compute_name, user_editable_teams
from pipelines_ui.uploads import NAME_MAX_BYTES, UploadError, zip_to_files
from stepwise.spec.bindings import JOB_NAME, MAX_RETRIES, MAX_TIMEOUT_S, PORT_NAME, coerce_literal, json_problem
from stepwise.spec.model import (
    DATA_TYPES,
    INPUT_TYPES,
    LITERAL_TYPES,
    OUTPUT_TYPES,
    SECRET_TYPE,
    DataPath,
    InputDecl,
    JobOutput,
    OutputDecl,
    ParentInput,
    ParentOutputRef,
    Problem,
    Step,
)
from stepwise.spec.model import Pipeline as PipelineSpec

IDENTIFIER_HELP = "Letters, digits and underscores; not starting with a digit."
STEP_NAME_HELP = "Lower-case letters, digits and underscores; not starting with a digit."
# `steps/new/` is the URL that adds a step, so no step may be called that.
RESERVED_STEP_NAMES = frozenset({"new"})
TEXT_FILE_MAX = 512 * 1024


def validate_identifier(value: str) -> None:
    if not PORT_NAME.fullmatch(value or ""):
        raise ValidationError(f"'{value}' is not a valid name. {IDENTIFIER_HELP}")


def _step_name_problem(value: str) -> str:
    """What is wrong with a step name, in words (the field's help text already gives the rule)."""
    if not value:
        return "A step needs a name."
    if value[0].isdigit():
        return f"'{value}' starts with a digit."
    if any(c.isupper() for c in value):
        return f"'{value}' has upper-case letters: try '{value.lower()}'."
    bad = sorted({c for c in value if not (c.isascii() and (c.isalnum() or c == "_"))})
    if bad:
        shown = " ".join("space" if c == " " else repr(c) for c in bad)
        return f"'{value}' has characters a step name cannot hold: {shown}."
    return f"'{value}' is not a valid step name."


def validate_step_name(value: str) -> None:
    if not JOB_NAME.fullmatch(value or ""):
        raise ValidationError(_step_name_problem(value or ""))
    if value in RESERVED_STEP_NAMES:
        raise ValidationError(f"'{value}' is reserved; pick another name.")


def _lf(value: str) -> str:
    return (value or "").replace("\r\n", "\n").replace("\r", "\n")


def coerce_literal_field(type_: str, raw: str):
    """The typed value of a literal typed in a form field; ValidationError names what is wrong."""
    try:
        return coerce_literal(type_, raw)
    except ValueError as exc:
        message = str(exc)
        raise ValidationError(message[0].upper() + message[1:] + ".") from None


def literal_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _compute_field_choices(current: str, *, blank_label: str) -> list[tuple[str, str]]:
    choices = [("", blank_label), *compute_choices()]
    if current and current not in {c for c, _ in choices}:
        # An alias or a name from an imported YAML: keep it selectable so it is not lost.
        choices.append((current, current))
    return choices


class _Form(forms.Form):
    # django-bootstrap4 marks every valid field of a bound form green; mark only errors.
    bound_css_class = ""


_NOT_A_BASE = "This form names no version of this pipeline to start from (it may have been altered)."


class BaseVersionForm(_Form):
    """`base_version`, which every editing form posts: the version it was opened on (0: none yet)."""

    base_version = forms.IntegerField(
        min_value=0,
        max_value=2**31 - 1,
        error_messages={
            "required": "This form does not say which version of the pipeline it was opened on "
            "(it may come from a page loaded before an update).",
            "invalid": _NOT_A_BASE,
            "min_value": _NOT_A_BASE,
            "max_value": _NOT_A_BASE,
        },
    )

    def __init__(self, *args, pipeline: Pipeline, **kwargs):
        self.pipeline = pipeline
        super().__init__(*args, **kwargs)

    def clean_base_version(self) -> int:
        number = self.cleaned_data["base_version"]
        if number and not self.pipeline.versions.filter(number=number).exists():
            raise ValidationError(f"This form was opened on v{number}, a version this pipeline does not have.")
        return number

    @property
    def error_text(self) -> str:
        return " ".join(self.errors.get("base_version", []))


# --- pipeline level ------------------------------------------------------------------


class PipelineCreateForm(_Form):
    name = forms.CharField(max_length=255, help_text="Unique within the team.")
    team = forms.ModelChoiceField(queryset=None, empty_label=None)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = user_editable_teams(user)

    def clean_name(self) -> str:
        return self.cleaned_data["name"].strip()

    def clean(self):
        data = super().clean()
        name, team = data.get("name"), data.get("team")
        if name and team and Pipeline.objects.filter(team=team, name=name).exists():
            self.add_error("name", "This team already has a pipeline with this name.")
        return data


class PipelineImportForm(_Form):
    file = forms.FileField(
        help_text="A pipeline YAML (.yml / .yaml), or a .zip of its folder: pipeline.yml, component files and code.",
        widget=forms.ClearableFileInput(attrs={"accept": ".yml,.yaml,.zip"}),
    )
    team = forms.ModelChoiceField(queryset=None, empty_label=None)
    name = forms.CharField(
        max_length=255,
        required=False,
        help_text="Leave blank to use the YAML's display_name. "
        "Importing under an existing pipeline's name adds a new version to it.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = user_editable_teams(user)


class PipelineSettingsForm(_Form):
    name = forms.CharField(max_length=255, help_text="How the pipeline is listed; unique within the team.")
    display_name = forms.CharField(max_length=255, required=False)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    experiment_name = forms.CharField(max_length=255, required=False)
    default_compute = forms.ChoiceField(required=False, help_text="Where steps without their own compute run.")
    continue_on_step_failure = forms.BooleanField(
        required=False, help_text="Keep running independent steps after a step fails."
    )
    force_rerun = forms.BooleanField(required=False, help_text="Never reuse results of earlier runs.")

    def __init__(self, *args, pipeline: Pipeline, spec: PipelineSpec | None = None, **kwargs):
        self.pipeline = pipeline
        if spec is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": pipeline.name,
                "display_name": spec.display_name,
                "description": spec.description or pipeline.description,
                "experiment_name": spec.experiment_name,
                "default_compute": spec.settings.default_compute,
                "continue_on_step_failure": spec.settings.continue_on_step_failure,
                "force_rerun": spec.settings.force_rerun,
            }
        super().__init__(*args, **kwargs)
        current = self.data.get("default_compute") if self.is_bound else self.initial.get("default_compute", "")
        fallback = default_compute_name()
        self.fields["default_compute"].choices = _compute_field_choices(
            current or "", blank_label=f"(none: steps use {fallback})" if fallback else "(none)"
        )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        clash = Pipeline.objects.filter(team=self.pipeline.team, name=name).exclude(pk=self.pipeline.pk)
        if clash.exists():
            raise ValidationError("This team already has a pipeline with this name.")
        return name

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        d = self.cleaned_data
        return replace(
            spec,
            display_name=d["display_name"],
            description=_lf(d["description"]),
            experiment_name=d["experiment_name"],
            settings=replace(
                spec.settings,
                default_compute=d["default_compute"],
                continue_on_step_failure=d["continue_on_step_failure"],
                force_rerun=d["force_rerun"],
            ),
        )


class PipelineInputForm(_Form):
    name = forms.CharField(max_length=100, validators=[validate_identifier])
    type = forms.ChoiceField(choices=[(t, t) for t in INPUT_TYPES], initial="string")
    default = forms.CharField(max_length=1000, required=False, strip=False)
    optional = forms.BooleanField(required=False)
    description = forms.CharField(max_length=500, required=False)

    def clean(self):
        data = super().clean()
        type_, default = data.get("type"), data.get("default", "")
        if type_ == SECRET_TYPE and default not in ("", None):
            self.add_error("default", "A secret takes no default: its value is given when a run starts.")
        elif type_ in LITERAL_TYPES and default not in ("", None):
            try:
                data["default_value"] = coerce_literal_field(type_, default)
            except ValidationError as exc:
                self.add_error("default", exc)
        else:
            data["default_value"] = default or None
        return data


class PipelineOutputForm(_Form):
    name = forms.CharField(max_length=100, validators=[validate_identifier])
    type = forms.ChoiceField(choices=[(t, t) for t in OUTPUT_TYPES], initial="uri_folder")
    description = forms.CharField(max_length=500, required=False)


class _UniqueNamesFormSet(forms.BaseFormSet):
    what = "name"

    def _live_forms(self) -> list[forms.Form]:
        """Rows that count: kept existing rows, and added rows the user filled in."""
        initial = self.initial_form_count()
        return [
            form
            for i, form in enumerate(self.forms)
            if not self._should_delete_form(form) and (i < initial or form.has_changed())
        ]

    def clean(self):
        if any(self.errors):
            return
        seen: set[str] = set()
        for form in self._live_forms():
            name = form.cleaned_data.get(self.what)
            if name in seen:
                form.add_error(self.what, f"'{name}' is used twice.")
            seen.add(name)

    def live(self) -> list[dict]:
        return [form.cleaned_data for form in self._live_forms()]


PipelineInputFormSet = forms.formset_factory(PipelineInputForm, formset=_UniqueNamesFormSet, extra=0, can_delete=True)
PipelineOutputFormSet = forms.formset_factory(PipelineOutputForm, formset=_UniqueNamesFormSet, extra=0, can_delete=True)


class InterfaceForms:
    """The pipeline's inputs and outputs, edited together."""

    def __init__(self, data=None, *, spec: PipelineSpec):
        self.spec = spec
        inputs_initial = [
            {
                "name": name,
                "type": decl.type,
                "default": literal_text(decl.default),
                "optional": decl.optional,
                "description": decl.description,
            }
            for name, decl in spec.inputs.items()
        ]
        outputs_initial = [
            {"name": name, "type": decl.type, "description": decl.description} for name, decl in spec.outputs.items()
        ]
        self.inputs = PipelineInputFormSet(data, prefix="pin", initial=inputs_initial)
        self.outputs = PipelineOutputFormSet(data, prefix="pout", initial=outputs_initial)

    def is_valid(self) -> bool:
        return all([self.inputs.is_valid(), self.outputs.is_valid()])

    def apply(self, spec: PipelineSpec) -> PipelineSpec:
        inputs: dict[str, InputDecl] = {}
        for row in self.inputs.live():
            old = spec.inputs.get(row["name"])
            inputs[row["name"]] = InputDecl(
                type=row["type"],
                default=row["default_value"],
                optional=row["optional"],
                description=row["description"],
                enum=old.enum if old is not None and old.type == row["type"] else None,
                min=old.min if old is not None and old.type == row["type"] else None,
                max=old.max if old is not None and old.type == row["type"] else None,
                # Files that came with an imported pipeline stay attached to their input.
                data=old.data if old is not None and old.type == row["type"] else None,
                asset=old.asset if old is not None and old.type == row["type"] else None,
            )
        outputs = {
            row["name"]: OutputDecl(type=row["type"], description=row["description"]) for row in self.outputs.live()
        }
        return replace(spec, inputs=inputs, outputs=outputs)


# --- steps ---------------------------------------------------------------------------

SOURCE_LITERAL = "literal"
SOURCE_NONE = "none"


def binding_to_source(binding) -> tuple[str, str]:
    """(source choice, literal text) of a step input's binding."""
    if isinstance(binding, ParentInput):
        return f"input:{binding.name}", ""
    if isinstance(binding, JobOutput):
        return f"output:{binding.job}.{binding.output}", ""
    if isinstance(binding, DataPath):
        return f"data:{binding.type}:{binding.key}", ""
    if binding is None:
        return SOURCE_NONE, ""
    return SOURCE_LITERAL, literal_text(binding)


def source_choices(spec: PipelineSpec, *, exclude_step: str | None, extra: list[str] = ()) -> list:
    """Grouped choices for a step input's source select."""
    groups: list = [
        (SOURCE_LITERAL, "A value (typed below)"),
        (SOURCE_NONE, "Nothing (use the default / leave optional input empty)"),
    ]
    if spec.inputs:
        groups.append(
            (
                "Pipeline inputs",
                [(f"input:{name}", f"pipeline input {name} ({decl.type})") for name, decl in spec.inputs.items()],
            )
        )
    outputs = [
        (f"output:{step.name}.{out}", f"{step.label} → {out} ({decl.type})")
        for step in spec.jobs.values()
        if step.name != exclude_step
        for out, decl in step.output_decls.items()
    ]
    if outputs:
        groups.append(("Outputs of other steps", outputs))
    known = {SOURCE_LITERAL, SOURCE_NONE}
    for group in groups[2:]:
        known.update(v for v, _ in group[1])
    leftovers = [(v, v.split(":", 1)[-1]) for v in extra if v and v not in known]
    if leftovers:
        groups.append(("Kept from the current version", leftovers))
    return groups


def source_to_binding(source: str, type_: str, value: str):
    if source == SOURCE_LITERAL:
        if type_ == SECRET_TYPE:
            raise ValidationError("A secret input takes a secret pipeline input, never a typed value.")
        if type_ in DATA_TYPES:
            raise ValidationError("A data input takes a pipeline input or another step's output, not a typed value.")
        return coerce_literal_field(type_, value)
    if source == SOURCE_NONE or not source:
        return None
    if source.startswith("input:"):
        return ParentInput(name=source[len("input:") :])
    if source.startswith("output:"):
        job, _, output = source[len("output:") :].rpartition(".")
        if not job or not output:
            raise ValidationError("Pick a step output.")
        return JobOutput(job=job, output=output)
    if source.startswith("data:"):
        _, data_type, key = source.split(":", 2)
        return DataPath(type=data_type, key=key)
    raise ValidationError("Unknown source.")


def _no_constant(name: str) -> None:
    # NaN and Infinity: JavaScript's, not JSON's; no JSON column or YAML export holds them.
    raise ValueError(f"{name} is not a JSON number")


class StepForm(_Form):
    name = forms.CharField(max_length=100, validators=[validate_step_name], help_text=STEP_NAME_HELP)
    display_name = forms.CharField(max_length=255, required=False)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    command = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "class": "text-monospace", "spellcheck": "false"}),
        help_text="Runs in the step's code folder. Use ${{inputs.NAME}} and ${{outputs.NAME}}; "
        "wrap optional parts in $[[ ... ]].",
    )
    compute = forms.ChoiceField(required=False)
    environment = forms.CharField(
        max_length=5000,
        required=False,
        help_text='Recorded and shown: a name such as azureml:sklearn-env:1, or a JSON object such as {"image": "…"}.',
    )
    environment_variables = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "class": "text-monospace", "spellcheck": "false"}),
        required=False,
        help_text="One KEY=VALUE per line.",
    )
    max_retries = forms.IntegerField(min_value=0, max_value=MAX_RETRIES, initial=0, label="Retries")
    timeout_s = forms.IntegerField(
        min_value=1,
        max_value=MAX_TIMEOUT_S,
        required=False,
        label="Timeout (seconds)",
        error_messages={"max_value": f"A timeout of at most {MAX_TIMEOUT_S} seconds (a year)."},
    )
    is_deterministic = forms.BooleanField(
        required=False, initial=True, label="Deterministic", help_text="Reuse earlier results when nothing changed."
    )
    code_zip = forms.FileField(
        required=False,
        label="Upload code (.zip)",
        help_text="Replaces the step's whole code folder with the zip's contents.",
        widget=forms.ClearableFileInput(attrs={"accept": ".zip"}),
    )

    def __init__(self, *args, compute_default_label: str = "(pipeline default)", **kwargs):
        super().__init__(*args, **kwargs)
        current = self.data.get("compute") if self.is_bound else self.initial.get("compute", "")
        self.fields["compute"].choices = _compute_field_choices(current or "", blank_label=compute_default_label)

    def clean_command(self) -> str:
        return _lf(self.cleaned_data["command"]).strip()

    def clean_environment(self) -> str | dict:
        text = self.cleaned_data["environment"].strip()
        if not text.startswith("{"):
            return text
        try:
            value = json.loads(text, parse_constant=_no_constant)
        except ValueError as exc:
            raise ValidationError(f"Not valid JSON: {exc}")
        except RecursionError:
            raise ValidationError("Not valid JSON: nested too deeply.")
        if not isinstance(value, dict):
            raise ValidationError("Give a name or a JSON object.")
        if problem := json_problem(value):
            raise ValidationError(f"Not usable as an environment: {problem}.")
        return value

    def clean_environment_variables(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for number, line in enumerate(_lf(self.cleaned_data["environment_variables"]).split("\n"), start=1):
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            key = key.strip()
            if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValidationError(f"Line {number}: expected KEY=VALUE.")
            env[key] = value
        return env

    def clean_code_zip(self) -> dict[str, bytes] | None:
        uploaded = self.cleaned_data.get("code_zip")
        if not uploaded:
            return None
        if not uploaded.name.lower().endswith(".zip"):
            raise ValidationError("Upload a .zip file.")
        try:
            return zip_to_files(uploaded)
        except UploadError as exc:
            raise ValidationError(str(exc))


class StepInputForm(_Form):
    name = forms.CharField(max_length=100, validators=[validate_identifier])
    type = forms.ChoiceField(choices=[(t, t) for t in INPUT_TYPES], initial="string")
    # The classes sit on the widgets: editor.js and stepwise.css find the rows' controls by them.
    source = forms.ChoiceField(initial=SOURCE_LITERAL, widget=forms.Select(attrs={"class": "input-source"}))
    value = forms.CharField(
        max_length=10000, required=False, strip=False, widget=forms.TextInput(attrs={"class": "input-value"})
    )
    optional = forms.BooleanField(required=False)

    def __init__(self, *args, source_choices=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source"].choices = source_choices

    def clean(self):
        data = super().clean()
        if "source" in data and "type" in data:
            try:
                data["binding"] = source_to_binding(data["source"], data["type"], data.get("value", ""))
            except ValidationError as exc:
                self.add_error("value" if data["source"] == SOURCE_LITERAL else "source", exc)
        return data


class StepOutputForm(_Form):
    name = forms.CharField(max_length=100, validators=[validate_identifier])
    type = forms.ChoiceField(choices=[(t, t) for t in OUTPUT_TYPES], initial="uri_folder")
    pipeline_output = forms.ChoiceField(required=False, label="Pipeline output")

    def __init__(self, *args, output_choices=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["pipeline_output"].choices = output_choices


class CodeFileForm(_Form):
    path = forms.CharField(max_length=255, widget=forms.TextInput(attrs={"placeholder": "main.py"}))
    content = forms.CharField(
        required=False,
        strip=False,
        max_length=TEXT_FILE_MAX,
        widget=forms.Textarea(attrs={"rows": 8, "class": "text-monospace code-editor", "spellcheck": "false"}),
    )

    def clean_path(self) -> str:
        raw = self.cleaned_data["path"].strip().replace("\\", "/")
        parts = [p for p in PurePosixPath(raw).parts if p not in ("", ".")]
        if raw.startswith("/") or not parts or any(p == ".." for p in parts):
            raise ValidationError("Give a relative path inside the code folder, e.g. src/train.py.")
        if any(len(p.encode()) > NAME_MAX_BYTES for p in parts):
            raise ValidationError(f"A file or folder name is at most {NAME_MAX_BYTES} bytes.")
        return "/".join(parts)


class _StepInputFormSet(_UniqueNamesFormSet):
    def __init__(self, *args, source_choices=(), **kwargs):
        self._source_choices = source_choices
        super().__init__(*args, **kwargs)

    def get_form_kwargs(self, index):
        return {"source_choices": self._source_choices}


class _StepOutputFormSet(_UniqueNamesFormSet):
    def __init__(self, *args, output_choices=(), **kwargs):
        self._output_choices = output_choices
        super().__init__(*args, **kwargs)

    def get_form_kwargs(self, index):
        return {"output_choices": self._output_choices}


class _CodeFileFormSet(_UniqueNamesFormSet):
    what = "path"

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        # `src/a` beside `src/a/b`: no folder holds both, and the step's folder could not be written.
        paths = {form.cleaned_data.get("path") for form in self._live_forms()}
        folders = {"/".join(p.split("/")[:i]) for p in paths if p for i in range(1, p.count("/") + 1)}
        for form in self._live_forms():
            if form.cleaned_data.get("path") in folders:
                form.add_error("path", f"'{form.cleaned_data['path']}' is also a folder of another file here.")


StepInputFormSet = forms.formset_factory(StepInputForm, formset=_StepInputFormSet, extra=0, can_delete=True)
StepOutputFormSet = forms.formset_factory(StepOutputForm, formset=_StepOutputFormSet, extra=0, can_delete=True)
CodeFileFormSet = forms.formset_factory(CodeFileForm, formset=_CodeFileFormSet, extra=0, can_delete=True)


def _text_files(files: dict[str, bytes]) -> tuple[dict[str, str], dict[str, bytes]]:
    """Split a code folder into files editable as text and files kept as bytes."""
    text, binary = {}, {}
    for path, data in sorted(files.items()):
        try:
            if len(data) > TEXT_FILE_MAX or b"\0" in data:
                raise UnicodeDecodeError("utf-8", data, 0, 1, "binary")
            text[path] = data.decode("utf-8")
        except UnicodeDecodeError:
            binary[path] = data
    return text, binary


# Where a validation problem's field lands on the step page.
_STEP_FIELD_ALIASES = {
    "limits": "timeout_s",
    "timeout": "timeout_s",
    "retry_settings": "max_retries",
    "is_deterministic": "is_deterministic",
    "code": "code_zip",
}


class StepForms:
    """Everything on the step page: the step itself, its inputs, outputs and code files."""

    def __init__(
        self,
        data=None,
        files=None,
        *,
        spec: PipelineSpec,
        step: Step | None = None,
        start_from: Step | None = None,
        start_files: dict[str, bytes] | None = None,
    ):
        """`start_from` (with `start_files`, its code) prefills a new step, e.g. from a registered component."""
        self.spec = spec
        self.original = step
        self.start_from = start_from if step is None else None
        self.start_files = dict(start_files or {}) if self.start_from else {}
        code_text, self.binary_files = _text_files(spec.step_files(step.name)) if step else ({}, {})
        if self.start_from is not None:
            code_text, self.binary_files = _text_files(self.start_files)
            step = self.start_from
        if step is not None:
            initial = {
                "name": step.name,
                "display_name": step.display_name,
                "description": step.description,
                "command": step.command,
                "compute": step.compute,
                # An inline environment definition is edited as JSON.
                "environment": step.environment
                if isinstance(step.environment, str)
                else json.dumps(step.environment, ensure_ascii=False),
                "environment_variables": "\n".join(f"{k}={v}" for k, v in step.environment_variables.items()),
                "max_retries": step.max_retries,
                "timeout_s": step.timeout_s,
                "is_deterministic": step.is_deterministic,
            }
            input_names = list(dict.fromkeys([*step.input_decls, *step.inputs]))
            inputs_initial = []
            for name in input_names:
                decl = step.input_decls.get(name)
                source, value = binding_to_source(step.inputs.get(name))
                if source == SOURCE_NONE and decl is not None and decl.default is not None:
                    source, value = SOURCE_NONE, ""
                inputs_initial.append(
                    {
                        "name": name,
                        "type": decl.type if decl else _guess_type(step.inputs.get(name)),
                        "source": source,
                        "value": value,
                        "optional": decl.optional if decl else False,
                    }
                )
            output_names = list(dict.fromkeys([*step.output_decls, *step.outputs]))
            outputs_initial = [
                {
                    "name": name,
                    "type": step.output_decls[name].type if name in step.output_decls else "uri_folder",
                    "pipeline_output": ref.name if isinstance(ref := step.outputs.get(name), ParentOutputRef) else "",
                }
                for name in output_names
            ]
            code_initial = [{"path": path, "content": content} for path, content in code_text.items()]
        else:
            initial = {"max_retries": 0, "is_deterministic": True}
            inputs_initial, outputs_initial = [], []
            code_initial = [{"path": "main.py", "content": ""}]

        if spec.settings.default_compute:
            compute_label = f"(pipeline default: {spec.settings.default_compute})"
        else:
            compute_label = f"(default: {default_compute_name() or 'none set'})"
        self.step_form = StepForm(data, files, initial=initial, compute_default_label=compute_label)
        if step is not None and step.transfer is not None:
            # The worker copies a data transfer step's files: it has no command unless one is written,
            # which makes it a command step.
            self.step_form.fields["command"].required = False
            self.step_form.fields["command"].help_text = (
                f"Empty: a data transfer ({step.transfer.task}) that the worker runs. "
                "A command written here makes it a command step."
            )
        extra_sources = [row["source"] for row in inputs_initial]
        self.inputs = StepInputFormSet(
            data,
            prefix="in",
            initial=inputs_initial,
            source_choices=source_choices(spec, exclude_step=step.name if step else None, extra=extra_sources),
        )
        self.outputs = StepOutputFormSet(
            data,
            prefix="out",
            initial=outputs_initial,
            output_choices=[("", "(none)")] + [(n, n) for n in spec.outputs],
        )
        self.code = CodeFileFormSet(data, prefix="code", initial=code_initial)
        self.problems: list[Problem] = []

    @property
    def all_formsets(self):
        return [self.inputs, self.outputs, self.code]

    def is_valid(self) -> bool:
        return all([self.step_form.is_valid(), self.inputs.is_valid(), self.outputs.is_valid(), self.code.is_valid()])

    def to_step(self) -> Step:
        d = self.step_form.cleaned_data
        old = self.original
        src = old or self.start_from  # where defaults and descriptions the form does not show come from
        input_decls: dict[str, InputDecl] = {}
        inputs: dict[str, object] = {}
        for row in self.inputs.live():
            prev = src.input_decls.get(row["name"]) if src else None
            keep = prev is not None and prev.type == row["type"]
            input_decls[row["name"]] = InputDecl(
                type=row["type"],
                default=prev.default if keep else None,
                optional=row["optional"],
                description=prev.description if keep else "",
                enum=prev.enum if keep else None,
                min=prev.min if keep else None,
                max=prev.max if keep else None,
            )
            if row.get("binding") is not None:
                inputs[row["name"]] = row["binding"]
        output_decls: dict[str, OutputDecl] = {}
        outputs: dict[str, ParentOutputRef | None] = {}
        for row in self.outputs.live():
            prev_out = src.output_decls.get(row["name"]) if src else None
            output_decls[row["name"]] = OutputDecl(
                type=row["type"],
                description=prev_out.description if prev_out else "",
                # Registration as a data asset (outputs.X.name/version) has no field yet: keep it.
                asset_name=prev_out.asset_name if prev_out else "",
                asset_version=prev_out.asset_version if prev_out else "",
            )
            if row["pipeline_output"]:
                outputs[row["name"]] = ParentOutputRef(name=row["pipeline_output"])
        base = old if old is not None else Step(name=d["name"], command="")
        if old is None and self.start_from is not None and self._still_the_component(d["command"]):
            base = self.start_from  # the step remembers the component it was made from
        return replace(
            base,
            name=d["name"],
            display_name=d["display_name"],
            description=_lf(d["description"]),
            command=d["command"],
            compute=d["compute"],
            environment=d["environment"],
            environment_variables=d["environment_variables"],
            max_retries=d["max_retries"] or 0,
            timeout_s=d["timeout_s"],
            is_deterministic=d["is_deterministic"],
            input_decls=input_decls,
            inputs=inputs,
            output_decls=output_decls,
            outputs=outputs,
            component_name=base.component_name if old is not None or base is self.start_from else "",
            component_version=base.component_version if old is not None or base is self.start_from else "",
            # A parallel job's command is generated from its settings: one edited by hand makes it
            # a command job running that command, rather than an edit its export would drop.
            parallel=base.parallel if base.parallel is not None and d["command"] == base.command else None,
            transfer=base.transfer if base.transfer is not None and not d["command"] else None,
        )

    def _still_the_component(self, command: str) -> bool:
        assert self.start_from is not None
        return command == self.start_from.command and self.code_files() == self.start_files

    def code_files(self) -> dict[str, bytes]:
        uploaded = self.step_form.cleaned_data.get("code_zip")
        if uploaded is not None:
            return uploaded
        files = dict(self.binary_files)
        for row in self.code.live():
            files[row["path"]] = _lf(row["content"]).encode("utf-8")
        return files

    def add_problems(self, problems: list[Problem], *, step_name: str) -> None:
        """Put each validation problem on the field it names; the rest go above the form."""
        for problem in problems:
            if problem.severity != "error":
                continue
            if not self._place(problem, step_name):
                self.problems.append(problem)

    def _place(self, problem: Problem, step_name: str) -> bool:
        if problem.job and problem.job not in (step_name, getattr(self.original, "name", None)):
            return False
        parts = [p for p in re.split(r"[.\[\]]+", problem.field or "") if p]
        if not parts:
            return False
        head = _STEP_FIELD_ALIASES.get(parts[0], parts[0])
        if head in ("inputs", "outputs") and len(parts) > 1:
            formset = self.inputs if head == "inputs" else self.outputs
            for form in formset.forms:
                if form.cleaned_data and form.cleaned_data.get("name") == parts[1]:
                    field = "source" if head == "inputs" else "name"
                    form.add_error(field, problem.message)
                    return True
            return False
        if head in self.step_form.fields and head != "code_zip":
            self.step_form.add_error(head, problem.message)
            return True
        return False


def _guess_type(binding) -> str:
    if isinstance(binding, bool):
        return "boolean"
    if isinstance(binding, int):
        return "integer"
    if isinstance(binding, float):
        return "number"
    if isinstance(binding, DataPath):
        return binding.type
    if isinstance(binding, JobOutput):
        return "uri_folder"
    return "string"
