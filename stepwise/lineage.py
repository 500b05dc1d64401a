"""The lineage graph's DOT: data versions, model versions and runs, and the edges between them
(a run read a version; a run's step made a version). Pure: plain nodes and edges in, DOT out;
the database walk is runs/registry/lineage.py. Labels go through the same escaping as the
pipeline graph's (stepwise/dag.py)."""

from __future__ import annotations

from dataclasses import dataclass

from stepwise.dag import _FONT, _attrs, _safe_url, _text

# How each kind of node looks: shape, fill.
_STYLE = {
    "data": ("note", "#e8f4fd"),
    "model": ("component", "#fdf1e0"),
    "run": ("box", "#f1f1f1"),
}


@dataclass(frozen=True)
class LineageNode:
    key: str  # "data:12", "model:3", "run:40": unique in the graph
    kind: str  # a key of _STYLE
    label: str
    url: str = ""
    detail: str = ""  # a second, smaller line


@dataclass(frozen=True)
class LineageEdge:
    source: str
    target: str
    label: str = ""


def node_dom_id(key: str) -> str:
    """The id of a node's SVG group: `lineage-data-12`."""
    return "lineage-" + key.replace(":", "-")


def lineage_dot(nodes: list[LineageNode], edges: list[LineageEdge], *, focus: str) -> str:
    lines = [
        "digraph lineage {",
        f'  graph [rankdir=LR, fontname="{_FONT}", bgcolor="transparent", nodesep=0.3, ranksep=0.5];',
        f'  node [fontname="{_FONT}", fontsize=11, style="filled,rounded", penwidth=1];',
        f'  edge [fontname="{_FONT}", fontsize=9, color="#888888"];',
    ]
    for node in nodes:
        shape, fill = _STYLE[node.kind]
        label = _text(node.label) + (("\\n" + _text(node.detail)) if node.detail else "")
        attrs = {
            "id": node_dom_id(node.key),
            "label": label,
            "shape": shape,
            "fillcolor": fill,
            "penwidth": "2.5" if node.key == focus else "1",
            "tooltip": _text(node.label),
        }
        if node.url:
            attrs["URL"] = _safe_url(node.url)
            attrs["target"] = "_top"
        lines.append(f'  "{node_dom_id(node.key)}" {_attrs(**attrs)};')
    for edge in edges:
        attrs = {"label": _text(edge.label, limit=40)} if edge.label else {}
        lines.append(
            f'  "{node_dom_id(edge.source)}" -> "{node_dom_id(edge.target)}"'
            + (f" {_attrs(**attrs)}" if attrs else "")
            + ";"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"
