"""Helpers for step scripts: `from stepwise import log_metric, log_param` (standard library only:
it runs inside every step, sandboxed, with nothing of the server).

Metrics and parameters are appended as JSON lines to the file the worker names in
STEPWISE_METRICS_FILE; the worker tails it and shows them on the run page.
Outside Stepwise (no such variable) the calls print the metric instead.
"""

import json
import os
import time

_counters = {}


def _write(record, fallback):
    path = os.environ.get("STEPWISE_METRICS_FILE")
    if not path:
        print(fallback)
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def log_metric(name, value, step=None):
    if step is None:
        step = _counters.get(name, 0)
    _counters[name] = int(step) + 1
    record = {"name": str(name), "value": float(value), "step": int(step), "time": time.time()}
    _write(record, f"metric {name}={value} (step {step})")


def log_metrics(metrics, step=None):
    for name, value in metrics.items():
        log_metric(name, value, step)


def log_param(name, value):
    """One value per name and step; logging a name again replaces its value."""
    record = {"param": str(name), "value": str(value), "time": time.time()}
    _write(record, f"param {name}={value}")


def log_params(params):
    for name, value in params.items():
        log_param(name, value)
