"""The data trigger form, shared by the pipeline's page (pipeline fixed) and the data asset's page (asset fixed)."""

from __future__ import annotations

from django import forms

from pipelines_ui.api import data_triggers
from pipelines_ui.api.data_triggers import TriggerError, TriggerSettings
from pipelines_ui.models import Pipeline, Team
from runs.models import DataAsset, Datastore
from runs.specs import version_spec
from stepwise.spec.bindings import is_run_resolved
from stepwise.spec.model import DATA_TYPES

SOURCES = [("asset", "A new version of a data asset"), ("datastore_path", "A change under a datastore path")]


def data_inputs(pipeline: Pipeline) -> list[str]:
    """The inputs a trigger can bind: data inputs declared with a reference (`azureml:...`)."""
    if pipeline.latest_version is None:
        return []
    spec = version_spec(pipeline.latest_version)
    return [
        n for n, d in spec.inputs.items() if d.type in DATA_TYPES and d.asset is not None and is_run_resolved(d.asset)
    ]


class DataTriggerForm(forms.Form):
    name = forms.CharField(max_length=100)
    pipeline = forms.ModelChoiceField(queryset=Pipeline.objects.none(), help_text="Runs its latest version.")
    input_name = forms.CharField(
        label="Input", max_length=255, help_text="The pipeline's data input (declared with path: azureml:...)."
    )
    source = forms.ChoiceField(label="Starts on", choices=SOURCES, initial="asset", widget=forms.RadioSelect)
    asset = forms.ModelChoiceField(label="Data asset", queryset=DataAsset.objects.none(), required=False)
    datastore = forms.ModelChoiceField(queryset=Datastore.objects.none(), required=False)
    path = forms.CharField(max_length=1000, required=False, help_text="A file or folder inside the datastore.")
    interval_seconds = forms.IntegerField(
        label="Check every (seconds)",
        required=False,
        initial=300,
        min_value=data_triggers.MIN_POLL_S,
        max_value=data_triggers.MAX_POLL_S,
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, team: Team, pipeline: Pipeline | None = None, asset: DataAsset | None = None, **kw):
        super().__init__(*args, **kw)
        self.team = team
        self.fields["pipeline"].queryset = Pipeline.objects.filter(team=team).order_by("name")
        self.fields["asset"].queryset = DataAsset.objects.filter(team=team).order_by("name")
        self.fields["datastore"].queryset = Datastore.objects.filter(team=team).order_by("name")
        if pipeline is not None:
            self.fields["pipeline"].initial = pipeline.pk
            self.fields["pipeline"].widget = forms.HiddenInput()
            choices = data_inputs(pipeline)
            self.fields["input_name"] = forms.ChoiceField(
                label="Input", choices=[(n, n) for n in choices], help_text=self.fields["input_name"].help_text
            )
        if asset is not None:
            self.fields["asset"].initial = asset.pk
            self.fields["source"].initial = "asset"

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        by_asset = data.get("source") == "asset"
        data["settings"] = TriggerSettings(
            name=data.get("name", ""),
            pipeline=data.get("pipeline"),
            input_name=data.get("input_name", ""),
            asset=data.get("asset") if by_asset else None,
            datastore=None if by_asset else data.get("datastore"),
            path="" if by_asset else data.get("path", ""),
            interval_seconds=None if by_asset else data.get("interval_seconds"),
            enabled=data.get("enabled", False),
        )
        return data

    def add_trigger_errors(self, exc: TriggerError) -> None:
        for key, message in exc.errors.items():
            self.add_error(key if key in self.fields else None, message)
