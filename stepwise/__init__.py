"""Stepwise's Django-free core: the pipeline spec (parse, validate, serialize), the DAG logic,
the states, the SDK and the client, importable without the server (`pip install .` from a
checkout); and inside a step, `from stepwise import log_metric` (the worker puts this package
on the step's PYTHONPATH)."""

from stepwise.tracking import log_metric, log_metrics, log_param, log_params

__all__ = ["log_metric", "log_metrics", "log_param", "log_params"]

# The SDK's names, imported when first used: a step's `from stepwise import log_metric` then never
# loads the client (and `requests`).
_SDK = {
    "Input": "stepwise.sdk",
    "Output": "stepwise.sdk",
    "command": "stepwise.sdk",
    "pipeline": "stepwise.sdk",
    "load_component": "stepwise.sdk",
    "load_pipeline": "stepwise.sdk",
    "Client": "stepwise.client",
    "StepwiseError": "stepwise.client",
    "ValidationError": "stepwise.client",
}


def __getattr__(name: str):
    if name in _SDK:
        import importlib

        return getattr(importlib.import_module(_SDK[name]), name)
    raise AttributeError(f"module 'stepwise' has no attribute {name!r}")
