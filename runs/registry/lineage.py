"""Lineage: what made a data version, model version or run, and what read it, across pipelines.

Walks the records runs keep (RunDataInput, RunModelInput: a run read a version; a version's
step_output: a run's step made it) upstream and downstream from one node, each direction to a
bounded depth and the whole graph to a bounded size, and only within the focus's team.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from pipelines_ui import graph
from runs.models import DataVersion, Run, RunDataInput
from runs.registry.models import ModelVersion, RunModelInput
from stepwise.lineage import LineageEdge, LineageNode, lineage_dot

MAX_DEPTH = 4
MAX_NODES = 150


@dataclass
class Lineage:
    focus: str
    nodes: dict[str, LineageNode] = field(default_factory=dict)
    edges: list[LineageEdge] = field(default_factory=list)
    truncated: bool = False

    def dot(self) -> str:
        return lineage_dot(list(self.nodes.values()), self.edges, focus=self.focus)

    def svg(self) -> str:
        return graph.render_svg(self.dot())


def _data_node(v: DataVersion) -> LineageNode:
    return LineageNode(
        key=f"data:{v.pk}",
        kind="data",
        label=f"{v.asset.name}:{v.version}",
        url=f"{v.asset.get_absolute_url()}?v={v.version}",
        detail="data" + (" · archived" if v.archived else ""),
    )


def _model_node(v: ModelVersion) -> LineageNode:
    return LineageNode(
        key=f"model:{v.pk}",
        kind="model",
        label=f"{v.model.name}:{v.version}",
        url=v.get_absolute_url(),
        detail=f"model · {v.flavour}" + (" · archived" if v.archived else ""),
    )


def _run_node(run: Run) -> LineageNode:
    return LineageNode(
        key=f"run:{run.pk}", kind="run", label=f"run #{run.pk}", url=run.get_absolute_url(), detail=run.pipeline.name
    )


def _made_by(step_output) -> tuple[LineageNode, str]:
    step_run = step_output.step_run
    return _run_node(step_run.run), f"{step_run.name}.{step_output.name}"


def _upstream(key: str, team_id: int) -> list[tuple[LineageNode, LineageEdge]]:
    kind, pk = key.split(":")
    found: list[tuple[LineageNode, LineageEdge]] = []
    if kind in ("data", "model"):
        model = DataVersion if kind == "data" else ModelVersion
        v = model.objects.select_related("step_output__step_run__run__pipeline").filter(pk=pk).first()
        if v is not None and v.step_output is not None and v.step_output.step_run.run.pipeline.team_id == team_id:
            node, label = _made_by(v.step_output)
            found.append((node, LineageEdge(node.key, key, label)))
    else:
        for row in RunDataInput.objects.filter(run_id=pk).select_related("data_version__asset"):
            node = _data_node(row.data_version)
            found.append((node, LineageEdge(node.key, key, row.name)))
        for row in RunModelInput.objects.filter(run_id=pk).select_related("model_version__model"):
            node = _model_node(row.model_version)
            found.append((node, LineageEdge(node.key, key, row.name)))
    return found


def _downstream(key: str, team_id: int) -> list[tuple[LineageNode, LineageEdge]]:
    kind, pk = key.split(":")
    found: list[tuple[LineageNode, LineageEdge]] = []
    if kind in ("data", "model"):
        rows = (
            RunDataInput.objects.filter(data_version_id=pk)
            if kind == "data"
            else RunModelInput.objects.filter(model_version_id=pk)
        )
        for row in rows.filter(run__pipeline__team_id=team_id).select_related("run__pipeline").order_by("-run_id")[:50]:
            node = _run_node(row.run)
            found.append((node, LineageEdge(key, node.key, row.name)))
    else:
        made = {"step_output__step_run__run_id": pk}
        for v in DataVersion.objects.filter(**made).select_related("asset", "step_output__step_run"):
            found.append(
                (_data_node(v), LineageEdge(key, f"data:{v.pk}", f"{v.step_output.step_run.name}.{v.step_output.name}"))
            )
        for v in ModelVersion.objects.filter(**made).select_related("model", "step_output__step_run"):
            found.append(
                (
                    _model_node(v),
                    LineageEdge(key, f"model:{v.pk}", f"{v.step_output.step_run.name}.{v.step_output.name}"),
                )
            )
    return found


def lineage_for(focus: LineageNode, *, team_id: int, depth: int = MAX_DEPTH) -> Lineage:
    result = Lineage(focus=focus.key, nodes={focus.key: focus})
    seen_edges: set[tuple[str, str, str]] = set()
    for step in (_upstream, _downstream):
        queue = deque([(focus.key, 0)])
        visited = {focus.key}
        while queue:
            key, level = queue.popleft()
            if level >= depth:
                continue
            for node, edge in step(key, team_id):
                if node.key not in result.nodes and len(result.nodes) >= MAX_NODES:
                    result.truncated = True
                    continue
                result.nodes.setdefault(node.key, node)
                ident = (edge.source, edge.target, edge.label)
                if ident not in seen_edges:
                    seen_edges.add(ident)
                    result.edges.append(edge)
                if node.key not in visited:
                    visited.add(node.key)
                    queue.append((node.key, level + 1))
    return result


def data_lineage(version: DataVersion) -> Lineage:
    return lineage_for(_data_node(version), team_id=version.asset.team_id)


def model_lineage(version: ModelVersion) -> Lineage:
    return lineage_for(_model_node(version), team_id=version.model.team_id)


def run_lineage(run: Run) -> Lineage:
    return lineage_for(_run_node(run), team_id=run.pipeline.team_id)
