"""The pipeline DAG's SVG: Graphviz lays out the DOT that `stepwise.dag.pipeline_dot` writes,
and the result is cached by the DOT's hash in memory and under VAR_DIR."""

from __future__ import annotations

import hashlib
import re
import subprocess
import threading
from collections import OrderedDict
from pathlib import Path

from django.conf import settings


class GraphRenderError(RuntimeError):
    pass


_LRU_SIZE = 256
_lru: OrderedDict[str, str] = OrderedDict()
_lru_lock = threading.Lock()
_PROLOG = re.compile(r"<\?xml.*?\?>|<!DOCTYPE.*?>|<!--.*?-->", re.S)


def _cache_dir() -> Path:
    return Path(settings.VAR_DIR) / "cache" / "svg"


def _run_dot(dot: str) -> str:
    try:
        proc = subprocess.run(
            ["dot", "-Tsvg"],
            input=dot.encode("utf-8"),
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GraphRenderError(f"graphviz failed: {exc}") from exc
    if proc.returncode != 0:
        raise GraphRenderError("graphviz failed: " + proc.stderr.decode("utf-8", "replace")[:500])
    return _PROLOG.sub("", proc.stdout.decode("utf-8")).strip()


def render_svg(dot: str) -> str:
    """The SVG for `dot`, without XML prolog, doctype or comments, ready to inline.

    Dense graphs take seconds to lay out, so results are cached by the DOT's sha256 in
    memory and on disk (shared by every process of the checkout).
    """
    key = _key(dot)
    with _lru_lock:
        if key in _lru:
            _lru.move_to_end(key)
            return _lru[key]
    path = _cache_dir() / key[:2] / f"{key}.svg"
    try:
        svg = path.read_text(encoding="utf-8")
    except OSError:
        svg = _run_dot(dot)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_text(svg, encoding="utf-8")
            tmp.replace(path)  # atomic: a concurrent reader never sees half a file
        except OSError:
            pass
    with _lru_lock:
        _lru[key] = svg
        _lru.move_to_end(key)
        while len(_lru) > _LRU_SIZE:
            _lru.popitem(last=False)
    return svg


def _key(dot: str) -> str:
    return hashlib.sha256(dot.encode("utf-8")).hexdigest()


def svg_cached(dot: str) -> bool:
    key = _key(dot)
    with _lru_lock:
        if key in _lru:
            return True
    return (_cache_dir() / key[:2] / f"{key}.svg").exists()


# Graphs with more steps than this are laid out in the background, never in a request.
LARGE_GRAPH_STEPS = 1000
# The editor's graphs (the pipeline page's and the step page's) sit in half the page or less: top
# to bottom reads better there (left to right, a small pipeline's labels were fitted to 6 px).
EDITOR_RANKDIR = "TB"
_drawing: set[str] = set()


def render_svg_in_background(dot: str) -> None:
    """Lay out a big graph in a daemon thread (once per DOT), so that no request waits for it."""
    key = _key(dot)
    with _lru_lock:
        if key in _drawing:
            return
        _drawing.add(key)

    def draw() -> None:
        try:
            render_svg(dot)
        except GraphRenderError:
            pass
        finally:
            with _lru_lock:
                _drawing.discard(key)

    threading.Thread(target=draw, name=f"dot-{key[:8]}", daemon=True).start()
