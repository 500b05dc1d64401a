"""Big graphs are laid out when their version is saved, so that no page waits on a cold graph.

dot takes tens of seconds for thousands of steps; pages only show a cached layout of those
(pipelines_ui.views._svg, runs.views._graph). Saving a version starts the layouts of the DOTs the
editor and the run pages will ask for, in the background, once the version is committed.
"""

from __future__ import annotations

import logging

from django.urls import reverse

from pipelines_ui import graph
from pipelines_ui.models import PipelineVersion
from runs import selectors as run_selectors
from stepwise import dag
from stepwise.spec import from_json

log = logging.getLogger(__name__)


def version_graph_dots(version: PipelineVersion) -> list[str]:
    """The DOTs of the version's graph that pages draw: the editor's and the run pages'."""
    spec = from_json(version.spec, dict(version.files or {}))
    pipeline_id = version.pipeline_id
    editor = dag.pipeline_dot(
        spec,
        step_url=lambda name: reverse("step_edit", args=[pipeline_id, name]),
        rankdir=graph.EDITOR_RANKDIR,
        **dag.expand_from_query(None),
    )
    runs = run_selectors.run_graph_dot(version.pk, version.content_hash, run_selectors.run_graph_placeholder())
    return [editor, runs]


def version_graphs_prerender(version: PipelineVersion) -> int:
    """Start laying out a big version's graphs; returns how many were started (0: a small graph)."""
    if len((version.spec or {}).get("jobs") or {}) <= graph.LARGE_GRAPH_STEPS:
        return 0
    started = 0
    try:
        for dot in version_graph_dots(version):
            if not graph.svg_cached(dot):
                graph.render_svg_in_background(dot)
                started += 1
    except Exception:  # the version is saved; a page will start the layout itself
        log.exception("cannot start laying out the graph of %s", version)
    return started
