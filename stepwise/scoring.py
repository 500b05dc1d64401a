"""A scorer: one model version behind a small HTTP server on a Unix socket, in a process of its own.

    python -m stepwise.scoring --model PATH --flavour custom_model --label clf:2 --version-id 7
        --socket scorer.sock --address-file F

It listens on the socket (a path relative to its working folder, so that a long folder path
does not overflow the 108 bytes a socket's name may take) and then writes its address,
`unix:/absolute/path`, to F (atomically), so whoever started it knows when it is ready and
where. A Unix socket rather than a TCP port, so that the deployer can run it in a sandbox with
no network at all: a model's pickle runs its author's code (runs/registry/deployer.py).

`POST /score` takes `{"rows": [{column: value}, ...]}` or `{"inputs": [[value, ...], ...]}`
and answers `{"predictions": [...], "model": LABEL}`; a bad row is a 400 naming the row and
the column. `POST /drain` (the deployer's) or SIGTERM drains: no new connection is accepted,
the requests in flight are answered, then it exits.

Django-free, so it starts fast and never holds the web server's state. Loading a pickle runs
code the model's author chose: only editors of the model's team can register and deploy one,
and the deployer confines it as it confines steps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

MAX_BODY = 10 * 1024 * 1024
MAX_ROWS = 10_000
MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle")


class ScoringInputError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ModelLoadError(RuntimeError):
    pass


def model_file(path: Path) -> Path:
    """The file to load: `path` itself, or the one model file (.joblib, .pkl, .pickle) in the folder."""
    if path.is_file():
        return path
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES)
    if not found:
        raise ModelLoadError(f"no model file ({', '.join(MODEL_SUFFIXES)}) in the model version")
    return found[0]


def load_model(path: Path, flavour: str):
    if flavour == "mlflow_model":
        try:
            import mlflow.pyfunc  # type: ignore[import-not-found]
        except ImportError:
            raise ModelLoadError("mlflow is not installed: mlflow_model versions cannot be served") from None
        return mlflow.pyfunc.load_model(str(path))
    import joblib

    try:
        model = joblib.load(model_file(path))
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - unpickling raises anything
        raise ModelLoadError(f"cannot load the model: {type(exc).__name__}: {str(exc)[:300]}") from None
    if not callable(getattr(model, "predict", None)):
        raise ModelLoadError(f"the loaded object ({type(model).__name__}) has no predict()")
    return model


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScoringInputError(field, f"expected a number, got {json.dumps(value)[:50]}")
    if not math.isfinite(value):
        raise ScoringInputError(field, "expected a finite number")
    return float(value)


def parse_rows(body: object, *, columns: list[str] | None, n_features: int | None) -> list[list[float]]:
    """The rows of a request as a matrix, in the model's column order; ScoringInputError names the bad cell.

    `columns`: the names the model was fitted with (scikit-learn's feature_names_in_); without
    them, rows given as objects take the first row's key order.
    """
    if not isinstance(body, dict) or ("rows" in body) == ("inputs" in body):
        raise ScoringInputError("body", 'send {"rows": [{column: value, ...}]} or {"inputs": [[value, ...]]}')
    key = "rows" if "rows" in body else "inputs"
    rows = body[key]
    if not isinstance(rows, list) or not rows:
        raise ScoringInputError(key, "a non-empty list is required")
    if len(rows) > MAX_ROWS:
        raise ScoringInputError(key, f"at most {MAX_ROWS} rows per request")
    matrix: list[list[float]] = []
    if key == "inputs":
        for i, row in enumerate(rows):
            if not isinstance(row, list):
                raise ScoringInputError(f"inputs[{i}]", "a list of values is required")
            if n_features is not None and len(row) != n_features:
                raise ScoringInputError(f"inputs[{i}]", f"expected {n_features} values, got {len(row)}")
            matrix.append([_number(v, f"inputs[{i}][{j}]") for j, v in enumerate(row)])
        return matrix
    first = rows[0]
    if not isinstance(first, dict):
        raise ScoringInputError("rows[0]", "an object of column: value is required")
    order = list(columns) if columns else [str(k) for k in first]
    if n_features is not None and len(order) != n_features:
        raise ScoringInputError("rows[0]", f"expected {n_features} columns, got {len(order)}")
    known = set(order)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ScoringInputError(f"rows[{i}]", "an object of column: value is required")
        for name in order:
            if name not in row:
                raise ScoringInputError(f"rows[{i}].{name}", "missing column")
        for name in row:
            if name not in known:
                raise ScoringInputError(f"rows[{i}].{str(name)[:100]}", "unknown column")
        matrix.append([_number(row[name], f"rows[{i}].{name}") for name in order])
    return matrix


def _jsonable(value: object) -> object:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return value


class Scorer:
    def __init__(self, model, label: str, version_id: int) -> None:
        self.model = model
        self.label = label
        self.version_id = version_id
        names = getattr(model, "feature_names_in_", None)
        self.columns = [str(n) for n in names] if names is not None else None
        n = getattr(model, "n_features_in_", None)
        self.n_features = int(n) if n is not None else None

    def score(self, body: object) -> tuple[int, dict]:
        try:
            matrix = parse_rows(body, columns=self.columns, n_features=self.n_features)
        except ScoringInputError as exc:
            return 400, {"detail": str(exc), "errors": [{"field": exc.field, "message": exc.message}]}
        started = time.perf_counter()
        try:
            import numpy as np

            predictions = self.model.predict(np.asarray(matrix, dtype=float))
        except Exception as exc:  # noqa: BLE001 - a model raises anything on input it cannot take
            return 400, {"detail": f"the model refused the input: {type(exc).__name__}: {str(exc)[:300]}"}
        return 200, {
            "predictions": [_jsonable(p) for p in predictions],
            "model": self.label,
            "version_id": self.version_id,
            "server_ms": round((time.perf_counter() - started) * 1000, 3),
        }


def _handler(scorer: Scorer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
            pass

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/health":
                self._send(200, {"model": scorer.label, "version_id": scorer.version_id})
            else:
                self._send(404, {"detail": "not found"})

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/drain":
                # The deployer's word to stop (a swap, a deletion): what is in flight is answered.
                self._send(202, {"detail": "draining"})
                threading.Thread(target=self.server.shutdown, daemon=True).start()
                return
            if self.path != "/score":
                self._send(404, {"detail": "not found"})
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._send(411, {"detail": "Content-Length is required"})
                return
            if length > MAX_BODY:
                self._send(413, {"detail": f"at most {MAX_BODY} bytes"})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except ValueError:
                self._send(
                    400, {"detail": "the body is not JSON", "errors": [{"field": "body", "message": "not JSON"}]}
                )
                return
            self._send(*scorer.score(body))

    return Handler


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    # Drain: on SIGTERM stop accepting, then server_close() joins the threads still answering.
    daemon_threads = False


def serve(scorer: Scorer, socket_path: Path, address_file: Path) -> None:
    socket_path.unlink(missing_ok=True)  # a predecessor's, in a folder that is this scorer's alone
    server = _UnixHTTPServer(str(socket_path), _handler(scorer))

    def drain(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, drain)
    signal.signal(signal.SIGINT, drain)
    tmp = address_file.with_suffix(".tmp")
    tmp.write_text(f"unix:{Path.cwd() / socket_path}")
    tmp.replace(address_file)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
        socket_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--flavour", default="custom_model")
    parser.add_argument("--label", default="model")
    parser.add_argument("--version-id", type=int, default=0)
    parser.add_argument("--socket", required=True, type=Path, help="relative to the working folder")
    parser.add_argument("--address-file", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model, args.flavour)
    except ModelLoadError as exc:
        print(f"scorer: {exc}", file=sys.stderr)
        return 3
    serve(Scorer(model, args.label, args.version_id), args.socket, args.address_file)
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
