"""The pipeline DAG on plain data: what runs next, what a rerun forces, node ids and the DOT.

Pure functions shared by the server (the orchestrator, the editor's graph, the run page) and
the client; `pipelines_ui.graph` only lays the DOT out with Graphviz and caches the SVG.

`pipeline_dot` is the only function that writes DOT. Everything a user typed (step names,
display names, compute names, input and output names) passes through `_text()` before it goes
into a quoted `label`, and nothing a user typed ever becomes a node id, a URL, a tooltip or an
HTML-like label: node ids are generated (`s0`, `i0`, ...), URLs come only from the caller's
`step_url`, and every label is a quoted string. That is what makes the rendered SVG safe to
inline in a page.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import quote

from stepwise.spec.model import DataPath, JobOutput, ParentInput, ParentOutputRef, Pipeline
from stepwise.spec.nesting import SEP, owners
from stepwise.states import DEFAULT_FILL, STATE_FILLS, STEP_DONE, STEP_TERMINAL, RunState, StepState

STOPPED = frozenset({StepState.FAILED, StepState.CANCELED, StepState.SKIPPED})


# ---- what runs next ----------------------------------------------------------------


def ready_steps(upstream: Mapping[str, Iterable[str]], states: Mapping[str, str]) -> set[str]:
    """Pending steps whose upstream steps all succeeded or were reused."""
    return {
        name
        for name, ups in upstream.items()
        if states[name] == StepState.PENDING and all(states[u] in STEP_DONE for u in ups)
    }


def blocked_steps(upstream: Mapping[str, Iterable[str]], states: Mapping[str, str]) -> set[str]:
    """Pending steps that can never run because an upstream step failed, was canceled or skipped."""
    return {
        name
        for name, ups in upstream.items()
        if states[name] == StepState.PENDING and any(states[u] in STOPPED for u in ups)
    }


def downstream_closure(upstream: Mapping[str, Iterable[str]], roots: Iterable[str]) -> set[str]:
    """`roots` and every step that depends on them, directly or not."""
    children: dict[str, set[str]] = {name: set() for name in upstream}
    for name, ups in upstream.items():
        for up in ups:
            children[up].add(name)
    seen = set(roots)
    stack = list(seen)
    while stack:
        for child in children[stack.pop()]:
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def run_outcome(states: Iterable[str], *, cancel_requested: bool) -> RunState | None:
    """The run's final state once every step is terminal, else None."""
    states = list(states)
    if any(s not in STEP_TERMINAL for s in states):
        return None
    if cancel_requested:
        return RunState.CANCELED
    if all(s in STEP_DONE for s in states):
        return RunState.SUCCEEDED
    return RunState.FAILED


# ---- the graph: node ids, fan-out groups, DOT ----------------------------------------------

LABEL_MAX = 60

_FONT = "Helvetica,Arial,sans-serif"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _text(value: object, *, limit: int = LABEL_MAX) -> str:
    """User text as the inside of a quoted DOT label that dot shows literally.

    Backslashes are doubled so dot reads no escape sequence (`\\n`, `\\N`, `\\G`, ...),
    quotes are escaped so the string cannot end early, `&` becomes `&amp;` so dot does
    not read a user's `&lt;` as an entity, and control characters become spaces.
    """
    s = _CONTROL.sub(" ", str(value))
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")


def dom_id(name: str) -> str:
    """A DOM id for a step's SVG node: `step-<name>` with unsafe characters replaced."""
    return "step-" + _ID_UNSAFE.sub("_", name)


def node_ids(p: Pipeline) -> dict[str, str]:
    """Step name -> the id of its node in the drawn graph: `dom_id`, made unique in the pipeline.

    The editor's graph, the run page's graph and the run page's script all take ids from here.
    """
    ids: dict[str, str] = {}
    used: set[str] = set()
    for i, name in enumerate(p.jobs):
        node_id = dom_id(name)
        if node_id in used:  # two names that sanitize alike
            node_id = f"{node_id}-s{i}"
        used.add(node_id)
        ids[name] = node_id
    return ids


def _safe_url(url: str) -> str:
    # dot copies URLs into xlink:href verbatim, without XML escaping.
    return quote(url, safe="/:?=%-._~#")


def _attrs(**attrs: str) -> str:
    """`[k="v", ...]`; values must already be DOT-safe (from `_text` or our own constants)."""
    return "[" + ", ".join(f'{k}="{v}"' for k, v in attrs.items()) + "]"


FAST_LAYOUT_STEPS = 500
# This many steps or more that read from the same nodes and feed the same nodes (a fan-out) are
# drawn as one node, "N similar steps", which a click expands: a 500-wide fan-out stays legible.
GROUP_MIN_STEPS = 12


def _step_sources(p: Pipeline, step) -> set[str]:
    sources = set()
    for binding in step.inputs.values():
        if isinstance(binding, JobOutput) and binding.job in p.jobs:
            sources.add("step:" + binding.job)
        elif isinstance(binding, ParentInput) and binding.name in p.inputs:
            sources.add("input:" + binding.name)
    return sources


def fanout_groups(p: Pipeline, *, expand: frozenset[str] | set[str] = frozenset()) -> dict[str, list[str]]:
    """Group node id -> the names of the similar steps it stands for (in pipeline order).

    Steps are similar when they read from the same nodes and feed the same nodes. A group whose
    id is in `expand` is drawn step by step.
    """
    sources = {name: _step_sources(p, step) for name, step in p.jobs.items()}
    targets: dict[str, set[str]] = {name: set() for name in p.jobs}
    for name, srcs in sources.items():
        for src in srcs:
            if src.startswith("step:"):
                targets[src[5:]].add("step:" + name)
    for name, step in p.jobs.items():
        for ref in step.outputs.values():
            if isinstance(ref, ParentOutputRef) and ref.name in p.outputs:
                targets[name].add("output:" + ref.name)
    similar: dict[tuple, list[str]] = {}
    for name in p.jobs:
        if not sources[name] and not targets[name]:
            continue  # lone steps are not a fan-out
        similar.setdefault((frozenset(sources[name]), frozenset(targets[name])), []).append(name)
    groups = {}
    for names in similar.values():
        if len(names) >= GROUP_MIN_STEPS:
            group_id = "group-" + dom_id(names[0])
            if group_id not in expand:
                groups[group_id] = names
    return groups


def component_id(group: str) -> str:
    """The id of a pipeline component's cluster, and of its node when it is drawn collapsed."""
    return "component-" + _ID_UNSAFE.sub("_", group)


def collapsed_components(p: Pipeline, collapse: frozenset[str] | set[str]) -> dict[str, list[str]]:
    """Node id -> the steps it stands for, for each component in `collapse` that no collapsed component holds."""
    parents = owners(p)
    result: dict[str, list[str]] = {}
    for name in p.jobs:
        outermost = ""
        group = parents.get(name, "")
        while group:
            if component_id(group) in collapse:
                outermost = group
            group = parents.get(group, "")
        if outermost:
            result.setdefault(component_id(outermost), []).append(name)
    return result


def _without(p: Pipeline, hidden: set[str]) -> Pipeline:
    if not hidden:
        return p
    jobs = {name: step for name, step in p.jobs.items() if name not in hidden}
    return Pipeline(name=p.name, inputs=p.inputs, outputs=p.outputs, jobs=jobs)


def graph_groups(
    p: Pipeline, *, expand: frozenset[str] | set[str] = frozenset(), collapse: frozenset[str] | set[str] = frozenset()
) -> dict[str, list[str]]:
    """Node id -> the steps it stands for, as `pipeline_dot` draws them: collapsed components, fan-out groups."""
    collapsed = collapsed_components(p, collapse)
    hidden = {name for names in collapsed.values() for name in names}
    return {**collapsed, **fanout_groups(_without(p, hidden), expand=expand)}


_GROUP_ID = re.compile(r"group-step-[A-Za-z0-9_-]{1,200}")
_COMPONENT_ID = re.compile(r"component-[A-Za-z0-9_-]{1,300}")
EXPAND_MAX = 50


def expand_from_query(query) -> dict:
    """`pipeline_dot`'s `expand`, `collapse` and their URLs from a page's `?expand=ID,ID&collapse=ID` (ids checked)."""

    def ids(key: str, pattern: re.Pattern[str]) -> frozenset[str]:
        raw = query.get(key, "") if query is not None else ""
        return frozenset(sorted(x for x in raw.split(",") if pattern.fullmatch(x))[:EXPAND_MAX])

    expand, collapse = ids("expand", _GROUP_ID), ids("collapse", _COMPONENT_ID)

    def url(expand_ids: frozenset[str], collapse_ids: frozenset[str]) -> str:
        parts = [f"{key}={','.join(sorted(v))}" for key, v in (("expand", expand_ids), ("collapse", collapse_ids)) if v]
        return "?" + "&".join(parts) if parts else "?"

    def expand_url(group_id: str) -> str:
        return url(expand | {group_id}, collapse)

    def collapse_url(component: str) -> str:
        """Collapses a component, or expands it again when it is collapsed."""
        return url(expand, collapse ^ {component})

    return {"expand": expand, "expand_url": expand_url, "collapse": collapse, "collapse_url": collapse_url}


def pipeline_dot(
    p: Pipeline,
    *,
    states: dict[str, str] | None = None,
    step_url: Callable[[str], str] | None = None,
    rankdir: str = "LR",
    expand: frozenset[str] | set[str] = frozenset(),
    expand_url: Callable[[str], str] | None = None,
    collapse: frozenset[str] | set[str] = frozenset(),
    collapse_url: Callable[[str], str] | None = None,
) -> str:
    """`expand`: ids of fan-out groups drawn step by step; `expand_url(group id)` links a group.

    Pipeline components are drawn as clusters labelled with their job name; those whose
    `component_id` is in `collapse` as one node, and `collapse_url(id)` links the one and the other.
    """
    states = states or {}
    if rankdir not in {"LR", "TB", "RL", "BT"}:
        rankdir = "LR"
    # Past a few hundred steps, dot's crossing minimization and spline routing take minutes
    # (5,000 steps: 70 s); a cheaper layout with straight edges takes seconds (7 s).
    fast = len(p.jobs) > FAST_LAYOUT_STEPS
    lines = [
        "digraph pipeline {",
        f'  graph [rankdir="{rankdir}", bgcolor="transparent", nodesep="0.35", ranksep="0.6", '
        'fontname="'
        + _FONT
        + '", fontsize="11"'
        + (', splines="line", mclimit="0.01", nslimit="0.1", nslimit1="0.1", remincross="false"' if fast else "")
        + "];",
        f'  node [fontname="{_FONT}", fontsize="11", color="#6c757d", penwidth="1.2"];',
        f'  edge [fontname="{_FONT}", fontsize="9", color="#868e96", fontcolor="#495057", arrowsize="0.7"];',
    ]

    step_ids = {name: f"s{i}" for i, name in enumerate(p.jobs)}
    input_ids = {name: f"i{i}" for i, name in enumerate(p.inputs)}
    output_ids = {name: f"o{i}" for i, name in enumerate(p.outputs)}
    dom_ids = node_ids(p)

    for name, decl in p.inputs.items():
        label = _text(name) + "\\n" + _text(decl.type, limit=20)
        lines.append(
            f"  {input_ids[name]} "
            + _attrs(
                id="input-" + _ID_UNSAFE.sub("_", name),
                **{"class": "pipeline-input"},
                shape="cds" if decl.type in ("uri_file", "uri_folder") else "note",
                style="filled",
                fillcolor="#f8f9fa",
                label=label,
            )
            + ";"
        )
    for name, decl in p.outputs.items():
        label = _text(name) + "\\n" + _text(decl.type, limit=20)
        lines.append(
            f"  {output_ids[name]} "
            + _attrs(
                id="output-" + _ID_UNSAFE.sub("_", name),
                **{"class": "pipeline-output"},
                shape="folder",
                style="filled",
                fillcolor="#f8f9fa",
                label=label,
            )
            + ";"
        )

    parents = owners(p)
    # Lines drawn inside each component's cluster ("": outside every cluster).
    body: dict[str, list[str]] = {"": []}
    drawn_as: dict[str, str] = {}  # a grouped step's DOT node: its group's
    collapsed = collapsed_components(p, collapse)
    hidden = {name for names in collapsed.values() for name in names}
    component_nodes = {}
    for c, (cid, names) in enumerate(collapsed.items()):
        node = f"c{c}"
        component_nodes[cid] = node
        for name in names:
            drawn_as[step_ids[name]] = node

    def cluster_of(name: str) -> str:
        group = parents.get(name, "")
        while group and any(component_id(g) in collapse for g in _chain(parents, group)):
            group = parents.get(group, "")
        return group

    for group_name, group in p.groups.items():
        cid = component_id(group_name)
        if cid not in component_nodes:
            continue
        count = len(collapsed[cid])
        attrs = {
            "id": cid,
            "class": "step-group component",
            "shape": "component",
            "style": "filled",
            "fillcolor": DEFAULT_FILL,
            "label": _text(group.label) + f"\\n{count:,} step{'s' if count != 1 else ''}",
        }
        if collapse_url is not None:
            attrs["URL"] = _safe_url(collapse_url(cid))
            attrs["target"] = "_top"
            attrs["tooltip"] = "Show this component's steps"
        body.setdefault(cluster_of(group_name), []).append(f"  {component_nodes[cid]} " + _attrs(**attrs) + ";")

    groups = fanout_groups(_without(p, hidden), expand=expand)
    for g, (group_id, names) in enumerate(groups.items()):
        gid = f"g{g}"
        for name in names:
            drawn_as[step_ids[name]] = gid
        first, last = p.jobs[names[0]], p.jobs[names[-1]]
        attrs = {
            "id": group_id,
            "class": "step-group",
            "shape": "box3d",
            "style": "filled",
            "fillcolor": DEFAULT_FILL,
            "label": f"{len(names):,} similar steps\\n{_text(first.label, limit=25)} … {_text(last.label, limit=25)}",
        }
        if expand_url is not None:
            attrs["URL"] = _safe_url(expand_url(group_id))
            attrs["target"] = "_top"
            attrs["tooltip"] = "Show these steps one by one"
        body.setdefault(cluster_of(names[0]), []).append(f"  {gid} " + _attrs(**attrs) + ";")

    for name, step in p.jobs.items():
        if step_ids[name] in drawn_as:
            continue
        node_id = dom_ids[name]
        compute = step.compute or p.settings.default_compute or "default compute"
        # Inside its component's cluster a step goes by its job name there.
        short = name.removeprefix(parents[name] + SEP) if name in parents else name
        label = _text(step.display_name or short)
        if step.display_name and step.display_name != short:
            label += "\\n" + _text(short, limit=40)
        label += "\\n" + _text("on " + compute, limit=40)
        if step.sweep is not None:
            label += "\\n" + _text(f"sweep: {step.sweep.limits.max_total_trials} trials", limit=40)
        state = states.get(name, "")
        attrs = {
            "id": node_id,
            "class": "step" + (f" state-{state}" if state in STATE_FILLS else ""),
            "shape": "box",
            "style": "rounded,filled",
            "fillcolor": STATE_FILLS.get(state, DEFAULT_FILL),
            "label": label,
        }
        if step.sweep is not None:
            attrs["peripheries"] = "2"  # many runs of one component, as a stack
        if step_url is not None:
            attrs["URL"] = _safe_url(step_url(name))
            attrs["target"] = "_top"
            # A constant tooltip: otherwise dot copies the label into xlink:title.
            attrs["tooltip"] = "Open step"
        body.setdefault(cluster_of(name), []).append(f"  {step_ids[name]} " + _attrs(**attrs) + ";")
    lines.extend(body[""])
    lines.extend(_clusters(p, "", body, collapse, collapse_url))

    # (from, to, label) -> the labels it stands for; edges into or out of a group are merged.
    edges: dict[tuple[str, str, str], list[str]] = {}
    groups_drawn = set(drawn_as.values())

    def add_edge(src: str, dst: str, label: str) -> None:
        src, dst = drawn_as.get(src, src), drawn_as.get(dst, dst)
        if src == dst:
            return  # between two steps of one collapsed component
        key = (src, dst, "" if src in groups_drawn or dst in groups_drawn else label)
        edges.setdefault(key, []).append(label)

    for name, step in p.jobs.items():
        sid = step_ids[name]
        for input_name, binding in step.inputs.items():
            if isinstance(binding, JobOutput) and binding.job in step_ids:
                src = step_ids[binding.job]
                label = _text(binding.output, limit=30) + " → " + _text(input_name, limit=30)
            elif isinstance(binding, ParentInput) and binding.name in input_ids:
                src = input_ids[binding.name]
                label = _text(input_name, limit=30)
            elif isinstance(binding, DataPath):
                continue
            else:
                continue
            add_edge(src, sid, label)
        for output_name, ref in step.outputs.items():
            if isinstance(ref, ParentOutputRef) and ref.name in output_ids:
                add_edge(sid, output_ids[ref.name], _text(output_name, limit=30))
    for (src, dst, _label), labels in edges.items():
        # Edges into or out of a group stand for one edge per step: say how many.
        label = labels[0] + (f" ×{len(labels):,}" if len(labels) > 1 else "")
        lines.append(f"  {src} -> {dst} " + _attrs(label=label) + ";")

    lines.append("}")
    return "\n".join(lines) + "\n"


def _chain(parents: Mapping[str, str], group: str) -> list[str]:
    """`group` and every component around it, innermost first."""
    chain = []
    while group:
        chain.append(group)
        group = parents.get(group, "")
    return chain


def _clusters(
    p: Pipeline,
    parent: str,
    body: Mapping[str, list[str]],
    collapse: frozenset[str] | set[str],
    collapse_url: Callable[[str], str] | None,
    indent: str = "  ",
) -> list[str]:
    """One `subgraph cluster_*` per expanded component inside `parent`, holding its nodes and nested clusters."""
    lines = []
    for i, (name, group) in enumerate(p.groups.items()):
        if group.parent != parent or component_id(name) in collapse:
            continue
        attrs = {
            "id": component_id(name),
            "class": "component",
            "label": _text(group.job) + (f" ({_text(group.display_name)})" if group.display_name else ""),
            "style": "rounded,dashed",
            "color": "#adb5bd",
            "fontcolor": "#495057",
            "labeljust": "l",
        }
        if collapse_url is not None:
            attrs["URL"] = _safe_url(collapse_url(component_id(name)))
            attrs["target"] = "_top"
            attrs["tooltip"] = "Collapse this component"
        lines.append(f"{indent}subgraph cluster_c{i} {{")
        lines.append(f"{indent}  graph " + _attrs(**attrs) + ";")
        lines.extend(indent + line for line in body.get(name, []))
        lines.extend(_clusters(p, name, body, collapse, collapse_url, indent + "  "))
        lines.append(f"{indent}}}")
    return lines
