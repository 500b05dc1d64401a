"""Helpers for step scripts: `from stepwise import log_metric`.

Metrics are appended as JSON lines to the file the worker names in
STEPWISE_METRICS_FILE; the worker tails it and shows them on the run page.
Outside Stepwise (no such variable) the calls print the metric instead.
"""

import json
import os
import time

_counters = {}


def log_metric(name, value, step=None):
    if step is None:
        step = _counters.get(name, 0)
    _counters[name] = int(step) + 1
    record = {"name": str(name), "value": float(value), "step": int(step), "time": time.time()}
    path = os.environ.get("STEPWISE_METRICS_FILE")
    if not path:
        print(f"metric {name}={value} (step {step})")
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def log_metrics(metrics, step=None):
    for name, value in metrics.items():
        log_metric(name, value, step)
