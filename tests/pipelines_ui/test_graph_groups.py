"""Wide fan-outs are drawn as one expandable node; big graphs are laid out when saved."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from pipelines_ui import graph, services
from stepwise.dag import GROUP_MIN_STEPS, expand_from_query, fanout_groups, pipeline_dot
from stepwise.spec import parse_text


def fan_yaml(width: int) -> str:
    """prep -> train_0 .. train_{width-1} -> report."""
    y = ["type: pipeline", "jobs:", "  prep:", "    type: command", "    command: echo ${{outputs.d}}"]
    y += ["    outputs:", "      d: {type: uri_folder}"]
    for i in range(width):
        y += [f"  train_{i}:", "    type: command", "    command: echo ${{inputs.d}} ${{outputs.m}}"]
        y += ["    inputs:", "      d: ${{parent.jobs.prep.outputs.d}}", "    outputs:", "      m: {type: uri_folder}"]
    y += [
        "  report:",
        "    type: command",
        "    command: echo " + " ".join(f"${{{{inputs.m{i}}}}}" for i in range(width)),
    ]
    y += ["    inputs:", *(f"      m{i}: ${{{{parent.jobs.train_{i}.outputs.m}}}}" for i in range(width))]
    return "\n".join(y) + "\n"


def fan(width: int):
    return parse_text(fan_yaml(width))[0]


def test_a_40_wide_fan_out_is_one_node_with_counted_edges():
    spec = fan(40)
    assert fanout_groups(spec) == {"group-step-train_0": [f"train_{i}" for i in range(40)]}
    dot = pipeline_dot(spec, **expand_from_query(None))
    assert 'id="group-step-train_0", class="step-group"' in dot
    assert 'label="40 similar steps\\ntrain_0 … train_39"' in dot
    assert 'URL="?expand=group-step-train_0"' in dot
    assert re.search(r's0 -> g0 \[label="d → d ×40"\]', dot)
    assert "train_7" not in dot.replace("train_0 … train_39", "")
    assert len(re.findall(r" -> ", dot)) == 2


def test_an_expanded_group_is_drawn_step_by_step():
    spec = fan(40)
    dot = pipeline_dot(spec, **expand_from_query({"expand": "group-step-train_0,junk<>"}))
    assert "step-group" not in dot and 'id="step-train_39"' in dot
    assert len(re.findall(r" -> ", dot)) == 80


def test_narrow_fan_outs_stay_as_they_are():
    assert fanout_groups(fan(GROUP_MIN_STEPS - 1)) == {}


def test_a_500_wide_fan_out_renders_small():
    svg = graph.render_svg(pipeline_dot(fan(500)))
    width, height = (float(x) for x in re.search(r'viewBox="0\.00 0\.00 ([\d.]+) ([\d.]+)"', svg).groups())
    assert width < 1000 and height < 200


@pytest.mark.django_db(transaction=True)
def test_a_big_graph_is_laid_out_when_its_version_is_saved(
    team, alice, compute, settings, tmp_path, monkeypatch, client
):
    settings.VAR_DIR = tmp_path
    started = []
    # Synchronously here: in the server, a background thread does it.
    monkeypatch.setattr(graph, "render_svg_in_background", lambda dot: started.append(graph.render_svg(dot)))
    width = graph.LARGE_GRAPH_STEPS + 1
    spec = fan(width)
    pipeline = services.pipeline_create(team=team, name="wide", user=alice, spec=spec)
    assert len(started) == 2  # the editor's graph and the run pages'
    client.force_login(alice)
    html = client.get(reverse("pipeline_detail", args=[pipeline.pk])).content.decode()
    assert "is being drawn" not in html and f"{width:,} similar steps" in html
    # The step page draws the same graph as the pipeline page: laid out already too.
    html = client.get(reverse("step_edit", args=[pipeline.pk, "prep"])).content.decode()
    assert "is being drawn" not in html and f"{width:,} similar steps" in html


def _node_y(svg: str, node_id: str) -> float:
    """Where a node's label sits in the SVG (y grows downwards)."""
    group = re.search(rf'<g id="{node_id.replace("-", "&#45;")}" class="node[^"]*">(.*?)</g>', svg, re.S).group(1)
    return float(re.search(r'<text[^>]* y="(-?[\d.]+)"', group).group(1))


@pytest.mark.django_db
def test_the_editor_graphs_read_top_to_bottom(team, alice, compute, client):
    """Beside the step list, in half the page: a small pipeline drawn left to right was fitted to
    labels of 6 px; top to bottom, it is drawn at full size."""
    pipeline = services.pipeline_create(team=team, name="fan", user=alice, spec=fan(2))
    client.force_login(alice)
    for url in (reverse("pipeline_detail", args=[pipeline.pk]), reverse("step_edit", args=[pipeline.pk, "prep"])):
        svg = client.get(url).content.decode()
        prep, train, report = (_node_y(svg, f"step-{name}") for name in ("prep", "train_0", "report"))
        assert prep < train < report
        assert _node_y(svg, "step-train_1") == train
