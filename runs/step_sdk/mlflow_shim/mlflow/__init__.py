"""A minimal stand-in for mlflow's tracking calls, so scripts written for Azure ML log
their metrics to Stepwise unchanged. Put on PYTHONPATH only where mlflow is not installed."""

import contextlib

from stepwise import log_metric as _log_metric
from stepwise import log_metrics as _log_metrics
from stepwise import log_param as _log_param


def log_metric(key, value, step=None, **_kwargs):
    _log_metric(key, value, step)


def log_metrics(metrics, step=None, **_kwargs):
    _log_metrics(metrics, step)


def log_param(key, value, **_kwargs):
    _log_param(key, value)


def log_params(params, **_kwargs):
    for key, value in params.items():
        log_param(key, value)


def set_tag(*_args, **_kwargs):
    pass


def set_tags(*_args, **_kwargs):
    pass


def autolog(*_args, **_kwargs):
    pass


def log_artifact(*_args, **_kwargs):
    pass


def log_artifacts(*_args, **_kwargs):
    pass


def log_text(*_args, **_kwargs):
    pass


def log_dict(*_args, **_kwargs):
    pass


def set_experiment(*_args, **_kwargs):
    pass


def set_tracking_uri(*_args, **_kwargs):
    pass


def active_run():
    return None


@contextlib.contextmanager
def start_run(*_args, **_kwargs):
    yield None


def end_run(*_args, **_kwargs):
    pass


class _Sklearn:
    @staticmethod
    def autolog(*_args, **_kwargs):
        pass

    @staticmethod
    def log_model(*_args, **_kwargs):
        pass

    @staticmethod
    def save_model(*_args, **_kwargs):
        pass


sklearn = _Sklearn()
