"""Every API error as `{"detail": ..., "errors": [{"file", "job", "field", "line", "message"}]}`,
`errors` empty where there is nothing to name (a 401, a 404 of the URL)."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.signals import got_request_exception
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from stepwise.spec.model import Problem

log = logging.getLogger("django.request")


def problem_json(problem: Problem) -> dict:
    return {
        "file": problem.file or None,
        "job": problem.job or None,
        "field": problem.field or None,
        "line": problem.line,
        "message": problem.message,
    }


def field_error(field: str | None, message: str) -> dict:
    return {"file": None, "job": None, "field": field, "line": None, "message": message}


def field_problems(detail, prefix: str = "") -> list[dict]:
    """DRF's nested validation detail flattened into problems naming the field."""
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else (f"{prefix}.{key}" if prefix else str(key))
            out += field_problems(value, name)
        return out
    if isinstance(detail, list):
        out = []
        for index, value in enumerate(detail):
            nested = isinstance(value, (dict, list))
            out += field_problems(value, f"{prefix}.{index}" if nested and prefix else prefix)
        return out
    return [field_error(prefix or None, str(detail))]


def error_response(detail: str, errors: list[dict] | None = None, *, status_code: int = 400, headers=None) -> Response:
    """The error body of design.md; `errors` is empty when there is no field or file to name."""
    return Response({"detail": detail, "errors": errors or []}, status=status_code, headers=headers)


def api_exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, exceptions.ValidationError):
        errors = field_problems(exc.detail)
        detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
        return error_response(detail or "invalid request", errors, status_code=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.ParseError):
        return error_response(str(exc.detail), [field_error(None, str(exc.detail))])
    response = exception_handler(exc, context)
    if response is None:
        return _internal_error(exc, context["request"])
    if isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"]), "errors": []}
    return response


def _internal_error(exc: Exception, request) -> Response:
    """A failure of ours, as the API's JSON error (a client parses every answer the same way),
    logged with its traceback and signalled as Django does for an uncaught exception."""
    log.error("Internal Server Error: %s", request.path, exc_info=exc, extra={"status_code": 500, "request": request})
    got_request_exception.send(sender=None, request=request)
    set_rollback()  # an answer, not a raise: with ATOMIC_REQUESTS the view's writes would commit
    detail = "internal error: the server could not answer this request; the failure is in its log"
    return error_response(detail, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)
