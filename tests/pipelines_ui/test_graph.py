from __future__ import annotations

import re

import pytest

from pipelines_ui import graph
from pipelines_ui.graph import render_svg
from stepwise import dag
from stepwise.dag import dom_id, pipeline_dot
from stepwise.spec.model import InputDecl, OutputDecl, ParentOutputRef, Step
from stepwise.spec.model import Pipeline as PipelineSpec
from stepwise.spec.sweep import Distribution, Objective, SweepLimits, SweepSpec
from stepwise.states import STATE_FILLS
from tests.pipelines_ui.conftest import make_spec

XSS = "<script>alert(1)</script>"


def _node_line(dot: str, node_id: str) -> str:
    return next(line for line in dot.splitlines() if f'id="{node_id}"' in line)


def test_one_node_per_step_with_label_and_compute():
    dot = pipeline_dot(make_spec())
    prep = _node_line(dot, "step-prep")
    train = _node_line(dot, "step-train")
    assert 'label="prep\\non local"' in prep
    # display name first, then the step name, then where it runs
    assert 'label="Train model\\ntrain\\non default compute"' in train
    assert 'shape="box"' in train


def test_a_sweep_step_says_so_and_is_drawn_as_a_stack():
    spec = make_spec()
    spec.jobs["train"].sweep = SweepSpec(
        search_space={"epochs": Distribution("choice", values=[1, 2])},
        objective=Objective("acc", "maximize"),
        limits=SweepLimits(max_total_trials=12),
    )
    train = _node_line(pipeline_dot(spec), "step-train")
    assert 'label="Train model\\ntrain\\non default compute\\nsweep: 12 trials"' in train
    assert 'peripheries="2"' in train
    assert "peripheries" not in _node_line(pipeline_dot(spec), "step-prep")


def test_pipeline_inputs_and_outputs_get_their_own_shapes():
    spec = make_spec()
    spec.outputs["model"] = OutputDecl(type="uri_folder")
    spec.jobs["train"].outputs["model"] = ParentOutputRef(name="model")
    dot = pipeline_dot(spec)
    assert 'shape="note"' in _node_line(dot, "input-epochs")
    assert 'shape="folder"' in _node_line(dot, "output-model")
    assert re.search(r"s1 -> o0 \[label=\"model\"\]", dot)


def test_edges_are_labelled_output_to_input():
    dot = pipeline_dot(make_spec())
    assert 's0 -> s1 [label="data → data"];' in dot
    assert 'i0 -> s1 [label="epochs"];' in dot


def test_default_compute_is_shown_when_step_has_none():
    spec = make_spec()
    spec.settings.default_compute = "gpu"
    assert "on gpu" in _node_line(pipeline_dot(spec), "step-train")


def test_state_colours_fill_nodes():
    dot = pipeline_dot(make_spec(), states={"prep": "succeeded", "train": "running"})
    assert f'fillcolor="{STATE_FILLS["succeeded"]}"' in _node_line(dot, "step-prep")
    assert 'class="step state-running"' in _node_line(dot, "step-train")
    assert set(STATE_FILLS) >= {"pending", "queued", "running", "succeeded", "failed", "reused", "skipped", "canceled"}


def test_unknown_state_gets_default_fill_and_no_class():
    line = _node_line(pipeline_dot(make_spec(), states={"prep": 'weird"state'}), "step-prep")
    assert 'class="step"' in line
    assert "weird" not in line


def test_urls_only_from_step_url_and_tooltip_is_constant():
    dot = pipeline_dot(make_spec(), step_url=lambda name: f"/pipelines/1/steps/{name}/")
    line = _node_line(dot, "step-train")
    assert 'URL="/pipelines/1/steps/train/"' in line
    assert 'tooltip="Open step"' in line
    assert "URL" not in pipeline_dot(make_spec())


def test_url_quotes_are_percent_encoded():
    dot = pipeline_dot(make_spec(steps=1), step_url=lambda name: '/x/"><b a="&')
    assert 'URL="/x/%22%3E%3Cb%20a=%22%26"' in dot


def test_user_text_is_escaped_in_labels():
    spec = PipelineSpec(name="p")
    spec.jobs["a"] = Step(name="a", command="x", display_name='say "hi" \\N \\G & &lt; ' + XSS)
    line = _node_line(pipeline_dot(spec), "step-a")
    label = re.search(r'label="((?:[^"\\]|\\.)*)"', line).group(1)
    assert label.startswith('say \\"hi\\" \\\\N \\\\G &amp; &amp;lt; <script>')
    # no HTML-like label, no attribute that carries user text besides the label
    assert "label=<" not in line
    assert 'tooltip="Open step"' not in line  # no step_url: no tooltip at all


def test_newlines_in_user_text_cannot_start_new_dot_statements():
    spec = PipelineSpec(name="p")
    spec.jobs["a"] = Step(name="a", command="x", display_name='x"];\nevil [URL="http://evil"];\n')
    dot = pipeline_dot(spec)
    assert not any(line.lstrip().startswith("evil") for line in dot.splitlines())
    svg = render_svg(dot)
    assert "xlink:href" not in svg
    assert "evil [URL=&quot;http://evil&quot;]" in svg or 'evil [URL="http://evil"]' in svg


def test_long_labels_are_truncated():
    spec = PipelineSpec(name="p")
    spec.jobs["a"] = Step(name="a", command="x", display_name="y" * 500)
    assert "y" * 100 not in pipeline_dot(spec)


def test_dom_id_sanitizes_names():
    assert dom_id("train") == "step-train"
    assert dom_id('a"b <c>') == "step-a_b__c_"


def test_node_ids_never_come_from_user_text():
    spec = PipelineSpec(name="p", inputs={'x"y': InputDecl(type="string")})
    spec.jobs["a"] = Step(name="a", command="x")
    dot = pipeline_dot(spec)
    assert re.search(r"^  i0 \[", dot, re.M)
    assert 'id="input-x_y"' in dot


@pytest.mark.parametrize("rankdir", ["LR", "TB"])
def test_rankdir(rankdir):
    assert f'rankdir="{rankdir}"' in pipeline_dot(make_spec(), rankdir=rankdir)


def test_bad_rankdir_falls_back():
    assert 'rankdir="LR"' in pipeline_dot(make_spec(), rankdir='"; evil')


def test_render_svg_strips_prolog_and_keeps_ids():
    svg = render_svg(pipeline_dot(make_spec(), step_url=lambda n: f"/s/{n}/"))
    assert svg.startswith("<svg")
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg and "<!--" not in svg
    assert 'id="step&#45;prep"' in svg or 'id="step-prep"' in svg
    assert 'xlink:href="/s/train/"' in svg


def test_render_svg_escapes_script_in_final_svg():
    spec = PipelineSpec(name="p", description=XSS)
    spec.jobs["a"] = Step(name="a", command="x", display_name=XSS, description=XSS)
    svg = render_svg(pipeline_dot(spec))
    assert "<script" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg


def test_render_svg_is_cached_in_memory_and_on_disk(settings, monkeypatch):
    graph._lru.clear()
    dot = pipeline_dot(make_spec())
    first = render_svg(dot)
    cached = list((settings.VAR_DIR / "cache" / "svg").rglob("*.svg"))
    assert len(cached) == 1

    def boom(_dot):
        raise AssertionError("dot ran again")

    monkeypatch.setattr(graph, "_run_dot", boom)
    assert render_svg(dot) == first
    graph._lru.clear()
    assert render_svg(dot) == first  # from the file


def test_render_svg_reports_dot_errors():
    with pytest.raises(graph.GraphRenderError):
        render_svg("digraph { this is not dot")


def test_editor_draws_a_huge_graph_in_the_background(monkeypatch, tmp_path, settings):
    from pipelines_ui import graph, views
    from stepwise.spec.model import Pipeline, Step

    settings.VAR_DIR = tmp_path
    started = []
    monkeypatch.setattr(graph, "LARGE_GRAPH_STEPS", 2)
    monkeypatch.setattr(views, "LARGE_GRAPH_STEPS", 2)
    monkeypatch.setattr(views, "render_svg_in_background", started.append)
    spec = Pipeline(name="big", jobs={f"s{i}": Step(name=f"s{i}", command="true") for i in range(3)})
    html = views._svg(spec)
    assert "is being drawn" in html and "<svg" not in html
    assert len(started) == 1


def test_large_graphs_get_the_fast_layout_and_small_ones_the_careful_one():
    def chain(n: int) -> PipelineSpec:
        jobs = {f"s{i}": Step(name=f"s{i}", command="true") for i in range(n)}
        return PipelineSpec(name="chain", jobs=jobs)

    small = pipeline_dot(chain(dag.FAST_LAYOUT_STEPS))
    large = pipeline_dot(chain(dag.FAST_LAYOUT_STEPS + 1))
    assert 'splines="line"' not in small and "remincross" not in small
    assert 'splines="line"' in large and 'remincross="false"' in large
    # Still a drawing dot accepts: straight edges, same nodes.
    svg = render_svg(pipeline_dot(chain(dag.FAST_LAYOUT_STEPS + 1)))
    assert svg.count('class="node') == dag.FAST_LAYOUT_STEPS + 1
