"""A pipeline version's content hash: the server and the SDK compute it here, so they agree."""

from __future__ import annotations

import hashlib
import json

from stepwise.spec.model import Pipeline
from stepwise.spec.serialize import to_json


def content_hash(*, spec_json: dict, files: dict[str, str]) -> str:
    """sha256 over the canonical JSON of the spec and the `{key: blob sha}` map."""
    canonical = json.dumps({"spec": spec_json, "files": files}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def file_shas(files: dict[str, bytes]) -> dict[str, str]:
    return {key: hashlib.sha256(data).hexdigest() for key, data in sorted(files.items())}


def pipeline_content_hash(spec: Pipeline) -> str:
    """The content hash the server gives a version saved from `spec`."""
    return content_hash(spec_json=to_json(spec), files=file_shas(spec.files))
