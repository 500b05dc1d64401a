from __future__ import annotations

from pipelines_ui.models import Pipeline, PipelineVersion


def test_spec_keeps_its_key_order_through_the_database(db, team, alice):
    # jsonb would return these shortest-key first; the editor and exports need the written order.
    spec = {"jobs": {"train_data": 1, "max_depth": 2, "criterion": 3, "random_state": 4}, "a": [1, {"z": 1, "b": 2}]}
    pipeline = Pipeline.objects.create(team=team, name="p", created_by=alice)
    PipelineVersion.objects.create(pipeline=pipeline, number=1, spec=spec, content_hash="x" * 64)
    stored = PipelineVersion.objects.get(pipeline=pipeline).spec
    assert list(stored["jobs"]) == ["train_data", "max_depth", "criterion", "random_state"]
    assert list(stored) == ["jobs", "a"]
    assert list(stored["a"][1]) == ["z", "b"]
