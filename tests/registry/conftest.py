from tests.runs.conftest import artifact_store, pipeline, run  # noqa: F401 - shared fixtures
