"""The pipeline spec as typed, pure data: what the Azure ML CLI v2 pipeline YAML holds.

The parser (YAML in) and the serializer (folder out) both speak these classes; the
editor, the DAG drawing and the runner read them. Nothing here touches Django.

A pipeline's files (code folders and local data inputs) are carried beside the spec as
`files: dict[str, bytes]`, so a pipeline is a pure value that round-trips through export
and import. Keys (POSIX relative paths, never `..`):

- `code/<step>/<relpath>`: the step's code folder (`Step.has_code`);
- `data/<input>/<relpath>`: a pipeline input given as a local path;
- `data/<job>.<input>/<relpath>`: a job input given as a local path (job and input names
  are identifiers, so the dot cannot collide with a pipeline input's key).

A `uri_file` input holds exactly one file under its prefix (`data/<input>/<filename>`);
a `uri_folder` input holds its folder's files. `code_key()` and `data_key()` build the
prefixes.

`Step.outputs` lists only the outputs bound to a pipeline output; an output that is just
declared lives in `Step.output_decls`. Unbound inputs are absent from `Step.inputs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .sweep import SweepSpec

LITERAL_TYPES = ("string", "integer", "number", "boolean")
DATA_TYPES = ("uri_file", "uri_folder")
# A Stepwise extension to Azure ML's types: a value given only when a run starts, never
# written in the YAML, passed to the step through its environment and masked in its logs.
SECRET_TYPE = "secret"
INPUT_TYPES = LITERAL_TYPES + DATA_TYPES + (SECRET_TYPE,)
OUTPUT_TYPES = DATA_TYPES


@dataclass(frozen=True)
class ParentInput:
    """`${{parent.inputs.NAME}}`"""

    name: str


@dataclass(frozen=True)
class JobOutput:
    """`${{parent.jobs.JOB.outputs.OUTPUT}}`"""

    job: str
    output: str


@dataclass(frozen=True)
class DataPath:
    """A data input given as files: `{type: uri_folder, path: ./data}`.

    In a parsed pipeline `key` is the prefix of its files in `Pipeline.files`
    (`data/<name>`), so the data travels with the version.
    """

    type: str
    key: str


Literal = str | int | float | bool
Binding = Literal | ParentInput | JobOutput | DataPath | None


@dataclass
class InputDecl:
    type: str
    default: Literal | None = None
    optional: bool = False
    description: str = ""
    enum: list[str] | None = None
    # Azure ML's inclusive bounds of an integer or number input; None: unbounded.
    min: int | float | None = None
    max: int | float | None = None
    # For pipeline-level data inputs with a local path: the files key prefix.
    data: DataPath | None = None
    # For pipeline-level data inputs naming a registered data asset: `azureml:NAME:VERSION` or
    # `azureml:NAME@latest`, resolved to one exact version when a run is created.
    asset: str | None = None
    # What `asset` names: "" a data asset; "mlflow_model" / "custom_model" a registered model
    # (the declared type, which the loader otherwise reads as uri_folder).
    asset_kind: str = ""
    # Declared `type: mltable`: a folder holding an MLTable file (read as uri_folder, and by a
    # parallel job as one table).
    table: bool = False


@dataclass
class OutputDecl:
    type: str = "uri_folder"
    description: str = ""
    # Azure ML's `outputs.X.name` / `outputs.X.version` on a job: register the output as this
    # data asset when the step succeeds (version empty: the next number).
    asset_name: str = ""
    asset_version: str = ""
    # "mlflow_model" / "custom_model" when the declared type is a model's: a named output then
    # registers a model version instead of a data version, as Azure ML does.
    asset_kind: str = ""
    # Stepwise's extension for a model output: deploy the registered version under this name
    # (or `${{parent.inputs.X}}`: under that input's value, none when it is empty).
    deploy: str = ""


DISTRIBUTION_TYPES = ("pytorch", "tensorflow", "mpi")


@dataclass(frozen=True)
class Distribution:
    """Azure ML's `distribution`: the step's command started `processes` times on its one host,
    each with the variables its framework reads (runs/distribution.py)."""

    type: str
    processes: int = 1


@dataclass
class ParallelSettings:
    """A `type: parallel` job's own fields (Azure ML's reference-yaml-job-parallel).

    The step's `command` runs Stepwise's driver (`stepwise.parallel.driver`) with these, so a
    parallel step executes, logs and is reused exactly as a command step is.
    """

    # The job input whose data is split: a folder's files, or a tabular (CSV) file's rows.
    input_data: str
    # Relative to the task's code folder.
    entry_script: str
    # As written: a count ("10") or, for tabular data, a size ("1mb"); "" for the default.
    mini_batch_size: str = ""
    # Columns of a tabular input_data: each mini-batch is the rows sharing their values. When
    # set, mini_batch_size is ignored, as Azure ML's partition keys take effect over it.
    partition_keys: list[str] = field(default_factory=list)
    program_arguments: str = ""
    # The job output the rows that run() returns are appended to; "" when not set.
    append_row_to: str = ""
    instance_count: int = 1
    max_concurrency_per_instance: int = 1
    # -1 ignores every failure; otherwise the job fails once failures exceed it.
    error_threshold: int = -1
    mini_batch_error_threshold: int = -1
    # Per mini-batch, as Azure ML has them (not retries of the whole step).
    max_retries: int = 2
    timeout_s: int = 60
    logging_level: str = "INFO"
    # Run settings bound to pipeline inputs, by their path as written ("mini_batch_size",
    # "resources.instance_count", "retry_settings.timeout", ...) -> the input's name. Their fields
    # above hold defaults; the run's values replace them when the step starts (parallel_bindings).
    bound: dict[str, str] = field(default_factory=dict)
    # The job runs a parallel component (a file or a mapping): its export writes the settings
    # into `components/<job>.yml` and the job binds it, as it does a command step's component.
    from_component: bool = False
    # input_data is declared uri_folder: its files are the mini-batches' items, an MLTable file
    # among them too, as Azure ML hands them. False for an mltable or a uri_file (a table's rows),
    # and in versions saved before the flag, whose driver tells a table by its MLTable file.
    files: bool = False


TRANSFER_TASKS = ("copy_data", "import_data", "export_data")
DATA_COPY_MODES = ("merge_with_overwrite", "fail_if_conflict")


@dataclass
class TransferSettings:
    """A `type: data_transfer` job's own fields (Azure ML's data import/export and copy_data).

    The worker runs it itself (runs/transfer.py), not as a command: a datastore's credentials
    stay in the worker. `source` (import_data) and `sink` (export_data) are file-system paths,
    `azureml://datastores/NAME/paths/PATH` or `s3://bucket/key`, as written.
    """

    task: str
    data_copy_mode: str = "merge_with_overwrite"
    source: str = ""
    sink: str = ""
    # Azure ML's connection name, kept for the export: the datastore holds the credentials here.
    connection: str = ""
    # The built-in component as written (`azureml://registries/azureml/components/...`), or "".
    component: str = ""


@dataclass
class Step:
    """One `type: command` job (or a `type: parallel` one, see `parallel`), with its component
    (inline or from a file) folded in; or a `type: sweep` job, with its trial component folded
    in and `sweep` set."""

    name: str
    command: str
    display_name: str = ""
    description: str = ""
    # Component identity (name/version of the component file; defaults to the step name).
    component_name: str = ""
    component_version: str = ""
    # Declared interface (the component's typed inputs and outputs).
    input_decls: dict[str, InputDecl] = field(default_factory=dict)
    output_decls: dict[str, OutputDecl] = field(default_factory=dict)
    # What the pipeline binds to them.
    inputs: dict[str, Binding] = field(default_factory=dict)
    outputs: dict[str, ParentOutputRef | None] = field(default_factory=dict)
    # True when the step has a code folder; its files are under `code/<name>/` in Pipeline.files.
    has_code: bool = False
    # A reference (`azureml:name@latest`, `name:1`) or an inline definition (`{image: ...}`).
    environment: str | dict[str, object] = ""
    compute: str = ""
    environment_variables: dict[str, str] = field(default_factory=dict)
    timeout_s: int | None = None
    max_retries: int = 0
    is_deterministic: bool = True
    parallel: ParallelSettings | None = None
    transfer: TransferSettings | None = None
    distribution: Distribution | None = None
    # A `type: sweep` job: the fields above are its trial's, run once per sampled set of inputs.
    sweep: SweepSpec | None = None

    @property
    def label(self) -> str:
        return self.display_name or self.name


@dataclass(frozen=True)
class ParentOutputRef:
    """A job output bound to a pipeline output: `${{parent.outputs.NAME}}`."""

    name: str


@dataclass
class ComponentGroup:
    """A `type: pipeline` job: a pipeline component whose command jobs run as steps of the pipeline.

    Its inner jobs are expanded into `Pipeline.jobs` under qualified names
    (`<group>__<job>`, see `stepwise.spec.nesting`), with bindings, compute and outputs
    resolved, so they run, reuse and retry like any step. The group keeps what the component
    file says in its own terms (bindings naming its inputs and its sibling jobs), which the
    export writes back and validation checks the expanded steps against.
    """

    name: str
    job: str
    parent: str = ""
    display_name: str = ""
    description: str = ""
    component_name: str = ""
    component_version: str = ""
    input_decls: dict[str, InputDecl] = field(default_factory=dict)
    output_decls: dict[str, OutputDecl] = field(default_factory=dict)
    # The job's bindings as written in its parent (`ParentInput`: the parent's input,
    # `JobOutput`: a sibling job by its key there).
    inputs: dict[str, Binding] = field(default_factory=dict)
    outputs: dict[str, ParentOutputRef] = field(default_factory=dict)
    compute: str = ""
    # Keys of its jobs in the component, in order (command steps and nested groups alike).
    jobs: list[str] = field(default_factory=list)
    # Per inner command job: its bindings and compute as written in the component file.
    job_inputs: dict[str, dict[str, Binding]] = field(default_factory=dict)
    job_outputs: dict[str, dict[str, ParentOutputRef]] = field(default_factory=dict)
    job_compute: dict[str, str] = field(default_factory=dict)
    # Per inner parallel job: its run settings bound to the component's inputs, as written
    # (`ParallelSettings.bound`, in the component's terms).
    job_parallel: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.display_name or self.job


@dataclass
class Settings:
    default_compute: str = ""
    continue_on_step_failure: bool = False
    force_rerun: bool = False
    default_datastore: str = ""


@dataclass
class Pipeline:
    name: str
    display_name: str = ""
    description: str = ""
    experiment_name: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)
    inputs: dict[str, InputDecl] = field(default_factory=dict)
    outputs: dict[str, OutputDecl] = field(default_factory=dict)
    jobs: dict[str, Step] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    # Pipeline components (`type: pipeline` jobs) by qualified name, parents before children.
    groups: dict[str, ComponentGroup] = field(default_factory=dict)

    def step_files(self, step: str) -> dict[str, bytes]:
        prefix = f"code/{step}/"
        return {k[len(prefix) :]: v for k, v in self.files.items() if k.startswith(prefix)}

    def edges(self) -> list[tuple[str, str, str, str]]:
        """(upstream job, output, downstream job, input) for every job-to-job binding."""
        result = []
        for step in self.jobs.values():
            for input_name, binding in step.inputs.items():
                if isinstance(binding, JobOutput):
                    result.append((binding.job, binding.output, step.name, input_name))
        return result

    def upstream(self) -> dict[str, set[str]]:
        deps: dict[str, set[str]] = {name: set() for name in self.jobs}
        for up, _out, down, _in in self.edges():
            deps[down].add(up)
        return deps


@dataclass
class Problem:
    """One validation finding, naming where it is: file, job and field."""

    message: str
    file: str = ""
    job: str = ""
    field: str = ""
    line: int | None = None
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = self.file or "<pipeline>"
        if self.line is not None:
            where += f":{self.line}"
        parts = [where]
        if self.job:
            parts.append(f"job '{self.job}'")
        if self.field:
            parts.append(f"field '{self.field}'")
        return f"{': '.join(parts)}: {self.message}"


def code_key(step: str) -> str:
    """Prefix (no trailing slash) of a step's code files in `Pipeline.files`."""
    return f"code/{step}"


def data_key(input_name: str, job: str | None = None) -> str:
    """Prefix (no trailing slash) of a local data input's files: pipeline-level, or one job's."""
    return f"data/{job}.{input_name}" if job else f"data/{input_name}"


class SpecError(Exception):
    """The spec is invalid; `problems` lists every error found (warnings ride along)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        super().__init__("\n".join(str(p) for p in errors) or "invalid pipeline")
