"""The REST API (docs/api.md) from Python: `Client().runs.create(pipeline, team=...)`.

Configuration, first found wins: arguments, then STEPWISE_URL / STEPWISE_TOKEN, then the file
`stepwise login` writes (`$XDG_CONFIG_HOME/stepwise/config.json`, mode 0600).
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import requests
import yaml

from stepwise.sdk import PipelineJob
from stepwise.sdk import load_pipeline as sdk_load_pipeline
from stepwise.spec import SpecError
from stepwise.spec import load_component as load_component_file

TERMINAL = frozenset({"succeeded", "failed", "canceled"})
STEP_DONE = frozenset({"succeeded", "failed", "canceled", "reused", "skipped"})


class StepwiseError(Exception):
    """An API call failed: `status` (0 when the server was not reached), the server's `detail` and
    `errors` (each a dict with file, job, field, line and message)."""

    def __init__(self, message: str, *, status: int = 0, errors: list[dict] | None = None):
        self.status = status
        self.detail = message
        self.errors = list(errors or [])
        lines = [message] + [problem_text(e) for e in self.errors]
        super().__init__("\n".join(lines))


class ValidationError(StepwiseError):
    """400: the input (a pipeline, a run's inputs) is invalid; `errors` names each problem."""


class AuthenticationError(StepwiseError):
    """401: no token, or an unknown, expired or revoked one."""


class PermissionDenied(StepwiseError):
    """403: the token's scope or the user's role does not allow it."""


class NotFound(StepwiseError):
    """404: no such object, or another team's."""


class Conflict(StepwiseError):
    """409: e.g. canceling a run that has already finished."""


_BY_STATUS = {400: ValidationError, 401: AuthenticationError, 403: PermissionDenied, 404: NotFound, 409: Conflict}


def problem_text(e: dict) -> str:
    where = [e.get("file") or ""]
    where += [f"job '{e['job']}'" if e.get("job") else "", f"field '{e['field']}'" if e.get("field") else ""]
    prefix = ": ".join(w for w in where if w)
    return f"  {prefix + ': ' if prefix else ''}{e.get('message', '')}"


# -- configuration ---------------------------------------------------------------------------


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stepwise" / "config.json"


def read_config() -> dict:
    path = config_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StepwiseError(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def write_config(*, url: str, token: str) -> Path:
    """Store URL and token for later commands, readable by the user alone (0600)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created 0600 before anything is written: the token is never readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url.rstrip("/"), "token": token}, fh)
    return path


# -- results ---------------------------------------------------------------------------------


@dataclass
class StepInfo:
    name: str
    state: str
    reused_from: int | None = None
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)


class Run:
    """A run as the server last described it; `refresh()` asks again."""

    def __init__(self, client: Client, data: dict):
        self._client = client
        self.data = data

    @property
    def id(self) -> int:
        return self.data["id"] if "id" in self.data else self.data["run"]

    @property
    def state(self) -> str:
        return self.data["state"]

    @property
    def url(self) -> str:
        return self.data.get("url", "")

    @property
    def steps(self) -> dict[str, StepInfo]:
        return {
            name: StepInfo(name=name, **{k: v for k, v in info.items() if k in StepInfo.__dataclass_fields__})
            for name, info in (self.data.get("steps") or {}).items()
        }

    def refresh(self) -> Run:
        self.data = self._client._json("GET", f"runs/{self.id}/")
        return self

    def wait(self, *, progress: bool = False, timeout: float | None = None, poll: float = 0.5) -> Run:
        """Poll until the run ends; with `progress`, a bar of finished steps on stderr."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _ProgressBar() if progress else None
        while True:
            self.refresh()
            if bar:
                bar.show(self)
            if self.state in TERMINAL:
                if bar:
                    bar.close(self)
                return self
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run #{self.id} still {self.state} after {timeout} s")
            time.sleep(poll)

    def cancel(self) -> Run:
        self.data = self._client._json("POST", f"runs/{self.id}/cancel/")
        return self

    def rerun(self, *, from_step: str | None = None, failed_only: bool = False) -> Run:
        body: dict = {}
        if from_step:
            body["from_step"] = from_step
        if failed_only:
            body["failed_only"] = True
        return Run(self._client, self._client._json("POST", f"runs/{self.id}/rerun/", json=body))

    def logs(self, step: str, *, follow: bool = False, after_seq: int = 0, poll: float = 0.5) -> Iterator[str]:
        """The step's log lines after line `after_seq` (lines are numbered from 1; 0: every line);
        with `follow`, keeps polling until the step has ended."""
        path = f"runs/{self.id}/steps/{quote(step, safe='')}/log/"
        seq = after_seq
        while True:
            page = self._client._json("GET", path, params={"after_seq": seq})
            for line in page["lines"]:
                yield line["text"]
            seq = page["next_seq"]
            if not follow:
                return
            if page["lines"]:
                continue
            self.refresh()
            state = (self.data.get("steps") or {}).get(step, {}).get("state")
            if state in STEP_DONE or self.state in TERMINAL:
                # One last read: lines written between the previous page and the end.
                for line in self._client._json("GET", path, params={"after_seq": seq})["lines"]:
                    yield line["text"]
                return
            time.sleep(poll)

    def metrics(self) -> list[dict]:
        """Every logged metric, in the order logged: dicts with step_name, name, step, value, created_at."""
        # The server's largest page: a run may hold millions of points, and every page counts
        # against the token's request rate.
        page = self._client._json("GET", f"runs/{self.id}/metrics/", params={"page_size": 10_000})
        points = list(page["results"])
        while page.get("next"):
            page = self._client._json("GET", page["next"])
            points.extend(page["results"])
        return points

    def download(self, step: str, output: str, dest: str | Path) -> Path:
        """Save a step's output under `dest`: a file as is, a folder unzipped into `dest/<output>`."""
        path = f"runs/{self.id}/steps/{quote(step, safe='')}/outputs/{quote(output, safe='')}/"
        response = self._client._request("GET", path)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        disposition = response.headers.get("Content-Disposition", "")
        if response.headers.get("Content-Type", "").startswith("application/zip") and ".zip" in disposition:
            target = dest / output
            with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
                _safe_extract(zf, target)
            return target
        name = _filename(disposition) or output
        target = dest / Path(name).name
        target.write_bytes(response.content)
        return target

    def __repr__(self) -> str:
        return f"<Run #{self.id} {self.state}>"


def _filename(disposition: str) -> str:
    for part in disposition.split(";"):
        key, _, value = part.strip().partition("=")
        if key == "filename":
            return value.strip('"')
    return ""


def _safe_extract(zf: zipfile.ZipFile, target: Path) -> None:
    root = target.resolve()
    for info in zf.infolist():
        path = (root / info.filename).resolve()
        if path != root and root not in path.parents:
            raise StepwiseError(f"refusing zip entry outside the folder: {info.filename}")
    zf.extractall(root)


class _ProgressBar:
    def __init__(self, stream=None, width: int = 30):
        self.stream = stream or sys.stderr
        self.width = width
        self.last = ""

    def show(self, run: Run) -> None:
        steps = run.steps
        done = sum(1 for s in steps.values() if s.state in STEP_DONE)
        total = max(len(steps), 1)
        filled = int(self.width * done / total)
        bar = "#" * filled + "." * (self.width - filled)
        line = f"\rrun #{run.id} [{bar}] {done}/{len(steps)} steps  {run.state:<9}"
        if line != self.last:
            self.stream.write(line)
            self.stream.flush()
            self.last = line

    def close(self, run: Run) -> None:
        self.stream.write("\n")
        for name, step in run.steps.items():
            reused = f" (from run #{step.reused_from})" if step.reused_from else ""
            self.stream.write(f"  {name}: {step.state}{reused}\n")
        self.stream.flush()


# -- resources -------------------------------------------------------------------------------


class _Resource:
    def __init__(self, client: Client):
        self._client = client


class Pipelines(_Resource):
    def list(self, *, team: str | None = None) -> list[dict]:
        return self._client._all("pipelines/", params={"team": team} if team else None)

    def get(self, pipeline_id: int) -> dict:
        return self._client._json("GET", f"pipelines/{pipeline_id}/")

    def create(self, source: PipelineJob | str | Path, *, team: str, name: str | None = None) -> dict:
        """Import a pipeline: an SDK pipeline, a pipeline YAML (with its folder) or a zip. A new version
        of the team's pipeline of that name when it exists; the same version when nothing changed."""
        filename, content = _upload(source)
        data = {"team": team}
        if name:
            data["name"] = name
        return self._client._json("POST", "pipelines/", data=data, files={"file": (filename, content)})

    def validate(self, source: PipelineJob | str | Path, *, team: str | None = None) -> dict:
        """Check a pipeline as the server would import it (its compute targets; `team`'s registered
        components), storing nothing: `{"valid", "steps", "inputs", "warnings"}`, or ValidationError."""
        filename, content = _upload(source)
        data = {"team": team} if team else {}
        return self._client._json("POST", "pipelines/validate/", data=data, files={"file": (filename, content)})

    def versions(self, pipeline_id: int) -> list[dict]:
        return self._client._all(f"pipelines/{pipeline_id}/versions/")

    def version(self, pipeline_id: int, number: int) -> dict:
        return self._client._json("GET", f"pipelines/{pipeline_id}/versions/{number}/")

    def export(self, pipeline_id: int, dest: str | Path, *, version: int | None = None) -> Path:
        """Write the version (default: the latest) as a pipeline folder under `dest`."""
        number = version or self.get(pipeline_id)["version"]
        response = self._client._request("GET", f"pipelines/{pipeline_id}/versions/{number}/export/")
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
            _safe_extract(zf, dest)
        return dest / "pipeline.yml"

    def find(self, name: str, *, team: str | None = None) -> dict:
        found = [p for p in self.list(team=team) if p["name"] == name]
        if len(found) != 1:
            message = f"no pipeline named {name!r}" if not found else f"{name!r} is in several teams: pass team"
            raise NotFound(message, status=404)
        return found[0]


def _upload(source: PipelineJob | str | Path) -> tuple[str, bytes]:
    if isinstance(source, PipelineJob):
        return f"{source.name}.zip", source.to_zip()
    path = Path(source)
    if path.suffix.lower() == ".zip":
        return path.name, path.read_bytes()
    try:
        # Read here as the server reads it: a small zip of just what the pipeline uses.
        return f"{path.stem}.zip", sdk_load_pipeline(path).to_zip()
    except SpecError:
        # The server may know better (registered `azureml:` components) and names the problems itself.
        return f"{path.stem}.zip", _folder_zip(path)


_SKIPPED = {".git", ".venv", "venv", "__pycache__", "node_modules", ".ipynb_checkpoints"}


def _folder_zip(yaml_path: Path) -> bytes:
    """The YAML's folder as a zip, the YAML itself as `pipeline.yml` (which is what the server looks for)."""
    folder = yaml_path.resolve().parent
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(yaml_path, "pipeline.yml")
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if (
                path.is_file()
                and not _SKIPPED & set(rel.parts)
                and rel.as_posix() not in ("pipeline.yml", "pipeline.yaml")
            ):
                zf.write(path, rel.as_posix())
    return buffer.getvalue()


class Runs(_Resource):
    def create(
        self,
        pipeline: PipelineJob | int | str | Path,
        *,
        team: str | None = None,
        inputs: dict | None = None,
        version: int | None = None,
        force_rerun: bool = False,
        force_steps: list[str] | tuple[str, ...] = (),
        name: str | None = None,
    ) -> Run:
        """Start a run of an SDK pipeline or a YAML file (imported into `team` first) or of an imported
        pipeline's id; an SDK pipeline's call values are its inputs, `inputs` overrides them.
        `force_steps`: steps that execute even if they could be reused."""
        values: dict = {}
        if isinstance(pipeline, int):
            pipeline_id = pipeline
        else:
            if team is None:
                raise ValueError("team= is needed to import the pipeline before running it")
            created = self._client.pipelines.create(pipeline, team=team, name=name)
            pipeline_id, version = created["id"], version or created["version"]
            if isinstance(pipeline, PipelineJob):
                values.update(pipeline.inputs)
        values.update(inputs or {})
        body: dict = {"inputs": values, "force_rerun": force_rerun}
        if force_steps:
            body["force_steps"] = list(force_steps)
        if version is not None:
            body["version"] = version
        return Run(self._client, self._client._json("POST", f"pipelines/{pipeline_id}/runs/", json=body))

    def get(self, run_id: int) -> Run:
        return Run(self._client, self._client._json("GET", f"runs/{run_id}/"))

    def list(self, *, pipeline: int | None = None, state: str | None = None, limit: int | None = None) -> list[dict]:
        params = {k: v for k, v in {"pipeline": pipeline, "state": state}.items() if v is not None}
        return self._client._all("runs/", params=params, limit=limit)

    def cancel(self, run_id: int) -> Run:
        return Run(self._client, {"id": run_id}).cancel()

    def rerun(self, run_id: int, *, from_step: str | None = None, failed_only: bool = False) -> Run:
        return Run(self._client, {"id": run_id}).rerun(from_step=from_step, failed_only=failed_only)

    def wait(self, run_id: int, *, progress: bool = False, timeout: float | None = None) -> Run:
        return self.get(run_id).wait(progress=progress, timeout=timeout)

    def logs(self, run_id: int, step: str, *, follow: bool = False) -> Iterator[str]:
        return Run(self._client, {"id": run_id}).logs(step, follow=follow)

    def metrics(self, run_id: int) -> list[dict]:
        return Run(self._client, {"id": run_id}).metrics()

    def download(self, run_id: int, step: str, output: str, dest: str | Path) -> Path:
        return Run(self._client, {"id": run_id}).download(step, output, dest)


class Endpoints(_Resource):
    def list(self) -> list[dict]:
        return self._client._all("endpoints/")

    def get(self, team: str, name: str) -> dict:
        return self._client._json("GET", f"endpoints/{quote(team, safe='')}/{quote(name, safe='')}/")

    def publish(self, *, team: str, name: str, pipeline: int, version: int | None = None) -> dict:
        body: dict = {"team": team, "name": name, "pipeline": pipeline}
        if version is not None:
            body["version"] = version
        return self._client._json("POST", "endpoints/", json=body)

    def call(
        self,
        team: str,
        name: str,
        *,
        inputs: dict | None = None,
        version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        body: dict = {"inputs": inputs or {}}
        if version is not None:
            body["version"] = version
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        path = f"endpoints/{quote(team, safe='')}/{quote(name, safe='')}/runs/"
        return Run(self._client, self._client._json("POST", path, json=body, headers=headers))


class Schedules(_Resource):
    def list(self) -> list[dict]:
        return self._client._all("schedules/")

    def get(self, schedule_id: int) -> dict:
        return self._client._json("GET", f"schedules/{schedule_id}/")

    def create(self, **fields: object) -> dict:
        """`team`, `name`, `pipeline` or `endpoint`, `cron` (+ `timezone`) or `interval_seconds`, `inputs`..."""
        return self._client._json("POST", "schedules/", json=fields)

    def update(self, schedule_id: int, **fields: object) -> dict:
        return self._client._json("PATCH", f"schedules/{schedule_id}/", json=fields)

    def pause(self, schedule_id: int) -> dict:
        return self.update(schedule_id, enabled=False)

    def resume(self, schedule_id: int) -> dict:
        return self.update(schedule_id, enabled=True)

    def delete(self, schedule_id: int) -> None:
        self._client._request("DELETE", f"schedules/{schedule_id}/")


class Secrets(_Resource):
    """A team's secrets, the team named by its name: members list them (names, never values);
    its admins set and delete them. A run's secret input given no value takes the one of its name."""

    def _path(self, team: str, name: str = "") -> str:
        found = [t["id"] for t in self._client.teams() if t["name"] == team]
        if not found:
            raise NotFound(f"no team named {team!r} that this token may see", status=404)
        return f"teams/{found[0]}/secrets/" + (f"{quote(name, safe='')}/" if name else "")

    def list(self, team: str) -> list[dict]:
        return self._client._all(self._path(team))

    def set(self, team: str, name: str, value: str) -> dict:
        """Create or replace it; the answer names it and who set it, never the value."""
        return self._client._json("PUT", self._path(team, name), json={"value": value})

    def delete(self, team: str, name: str) -> None:
        self._client._request("DELETE", self._path(team, name))


class Components(_Resource):
    def list(self, *, team: str | None = None, name: str | None = None) -> list[dict]:
        params = {k: v for k, v in {"team": team, "name": name}.items() if v}
        return self._client._all("components/", params=params)

    def create(self, source: str | Path, *, team: str, name: str | None = None, version: str | None = None) -> dict:
        """Register a command component from its YAML file, with its code folder (`azureml:NAME:VERSION`)."""
        path = Path(source)
        content = path.read_bytes() if path.suffix.lower() == ".zip" else _component_zip(path)
        data = {"team": team, **{k: v for k, v in {"name": name, "version": version}.items() if v}}
        return self._client._json("POST", "components/", data=data, files={"file": (f"{path.stem}.zip", content)})


def _component_zip(path: Path) -> bytes:
    """The component file with its code folder moved beside it (`code: ./code`), as the server takes it."""
    _step, files, _warnings = load_component_file(path)  # checked here first: errors name the local file
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        if isinstance(doc, dict) and doc.get("code"):
            doc["code"] = "./code"
            for rel, data in sorted(files.items()):
                zf.writestr(f"code/{rel}", data)
        zf.writestr(path.name if path.suffix else "component.yml", yaml.safe_dump(doc, sort_keys=False))
    return buffer.getvalue()


class Client:
    """The Stepwise REST API: `pipelines`, `runs`, `endpoints`, `schedules`, `components`, `secrets`."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 60.0):
        config = {} if (url and token) else read_config()
        self.url = (url or os.environ.get("STEPWISE_URL") or config.get("url") or "").rstrip("/")
        self.token = token or os.environ.get("STEPWISE_TOKEN") or config.get("token") or ""
        if not self.url:
            raise StepwiseError("no server: pass url=, set STEPWISE_URL, or run `stepwise login URL`")
        self.timeout = timeout
        self.session = requests.Session()
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"
        self.session.headers["Accept"] = "application/json"
        self.pipelines = Pipelines(self)
        self.runs = Runs(self)
        self.endpoints = Endpoints(self)
        self.schedules = Schedules(self)
        self.components = Components(self)
        self.secrets = Secrets(self)

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        url = path if path.startswith("http") else f"{self.url}/api/v1/{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise StepwiseError(f"cannot reach {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _json(self, method: str, path: str, **kwargs) -> dict:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise StepwiseError(f"{method} {path}: the server answered {response.status_code} without JSON") from None

    def _all(self, path: str, *, params: dict | None = None, limit: int | None = None) -> list[dict]:
        results: list[dict] = []
        page = self._json("GET", path, params={**(params or {}), "page_size": 500})
        while True:
            results.extend(page["results"])
            if not page.get("next") or (limit is not None and len(results) >= limit):
                return results[:limit] if limit is not None else results
            page = self._json("GET", page["next"])

    def teams(self) -> list[dict]:
        return self._all("teams/")

    def writable_teams(self) -> list[str]:
        """The names of the teams this caller may import pipelines into: an editor's or an admin's."""
        return [team["name"] for team in self.teams() if team["role"] in ("editor", "admin")]


def _error(response: requests.Response) -> StepwiseError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    detail = body.get("detail") if isinstance(body, dict) else None
    errors = body.get("errors") if isinstance(body, dict) else None
    message = detail or f"{response.request.method} {response.url}: HTTP {response.status_code}"
    cls = _BY_STATUS.get(response.status_code, StepwiseError)
    return cls(str(message), status=response.status_code, errors=errors if isinstance(errors, list) else [])
