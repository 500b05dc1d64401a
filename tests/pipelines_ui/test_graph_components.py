"""Pipeline components in the graph: a cluster per component, one node when collapsed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from django.urls import reverse

from pipelines_ui import graph, services
from stepwise.dag import component_id, expand_from_query, graph_groups, pipeline_dot
from stepwise.spec import load_pipeline

CORPUS = Path(__file__).resolve().parents[1] / "azureml_corpus" / "pipeline_component"
XSS = '<script>alert("x")</script>'


@pytest.fixture
def spec():
    return load_pipeline(CORPUS / "pipeline.yml")[0]


def test_each_component_is_a_nested_cluster_labelled_with_its_job(spec):
    dot = pipeline_dot(spec, **expand_from_query(None))
    outer = dot.index("subgraph cluster_c0 {")
    inner = dot.index("subgraph cluster_c1 {")
    closing = [i for i, line in enumerate(dot.splitlines()) if line.strip() == "}"]
    assert outer < inner and len(closing) == 3  # two clusters and the graph
    assert 'id="component-train_and_eval", class="component", label="train_and_eval (Train and evaluate)"' in dot
    assert 'id="component-train_and_eval__fit", class="component", label="fit"' in dot
    # Steps sit in their innermost cluster and go by their job name there.
    cluster_body = dot[inner : dot.index("}", inner)]
    assert 'id="step-train_and_eval__fit__train"' in cluster_body
    assert 'label="train\\non azureml:cpu-cluster"' in cluster_body
    assert 'URL="?collapse=component-train_and_eval__fit"' in cluster_body
    # The report step is outside every cluster.
    assert dot.index('id="step-report"') < outer
    assert re.search(r"s1 -> s2 \[label=\"model → scores\"\]", dot)


def test_a_collapsed_component_is_one_node_with_its_edges(spec):
    query = expand_from_query({"collapse": "component-train_and_eval,not a valid id<>"})
    assert query["collapse"] == {"component-train_and_eval"}
    dot = pipeline_dot(spec, **query)
    assert "subgraph" not in dot and "step-train_and_eval__prep" not in dot
    node = next(line for line in dot.splitlines() if 'id="component-train_and_eval"' in line)
    assert 'shape="component"' in node and 'label="Train and evaluate\\n2 steps"' in node
    assert 'URL="?"' in node  # expands it again
    assert re.search(r"i0 -> c0 \[label=\"raw\"\]", dot)
    assert re.search(r"c0 -> s2 \[label=\"model → scores\"\]", dot)
    assert not re.search(r"c0 -> c0", dot)  # the edge inside it is not drawn
    assert graph_groups(spec, collapse=query["collapse"]) == {
        "component-train_and_eval": ["train_and_eval__prep", "train_and_eval__fit__train"]
    }


def test_a_collapsed_inner_component_stays_inside_its_parents_cluster(spec):
    query = expand_from_query({"collapse": component_id("train_and_eval__fit")})
    dot = pipeline_dot(spec, **query)
    outer = dot.index("subgraph cluster_c0 {")
    node = dot.index('id="component-train_and_eval__fit", class="step-group component"')
    assert outer < node < dot.index("}", outer)
    # Both ids stay in the link, so collapsing the outer one keeps the inner one collapsed.
    assert 'URL="?collapse=component-train_and_eval%2Ccomponent-train_and_eval__fit"' in dot


def test_component_labels_are_escaped_in_the_svg(spec):
    spec.groups["train_and_eval"].display_name = XSS
    svg = graph.render_svg(pipeline_dot(spec))
    assert "<script" not in svg
    assert "(&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;)" in svg
    assert '<g id="component&#45;train_and_eval" class="cluster component">' in svg


@pytest.mark.django_db
def test_the_pipeline_page_collapses_a_component(client, alice, team, compute, tmp_path):
    folder = tmp_path / "p"
    shutil.copytree(CORPUS, folder)
    version = services.pipeline_import(team=team, path=folder / "pipeline.yml", user=alice)
    client.force_login(alice)
    url = reverse("pipeline_detail", args=[version.pipeline.pk])
    html = client.get(url).content.decode()
    assert 'id="component&#45;train_and_eval" class="cluster component"' in html
    assert 'id="step&#45;train_and_eval__prep"' in html
    html = client.get(url, {"collapse": "component-train_and_eval"}).content.decode()
    assert 'id="component&#45;train_and_eval" class="node step&#45;group component"' in html
    assert 'id="step&#45;train_and_eval__prep"' not in html
