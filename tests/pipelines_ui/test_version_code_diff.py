"""Comparing versions shows a unified diff of every code file changed, added or removed."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from django.test import Client

from pipelines_ui import services
from pipelines_ui.version_diff import CODE_DIFF_MAX_BYTES, code_diff
from tests.pipelines_ui.test_version_diff_views import diff_url

XSS = "<script>alert(1)</script>"


def save_code(pipeline, user, step: str, files: dict[str, bytes]) -> int:
    pipeline.refresh_from_db()
    base = pipeline.latest_version.number
    spec = services.pipeline_base_spec(pipeline=pipeline, number=base)
    edited = replace(spec.jobs[step])
    saved = services.pipeline_step_save(
        pipeline=pipeline, step=edited, author=user, original_name=step, code_files=files, base_version=base
    )
    return saved.version.number


@pytest.fixture
def alice_client(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def file_blocks(html: str) -> dict[str, tuple[str, str]]:
    """path -> (status, the text of its diff block)."""
    found = re.findall(
        r'class="border-top code-file" id="file-\d+" data-path="([^"]+)" data-status="(\w+)">(.*?)\n  </div>',
        html,
        re.S,
    )
    return {path: (status, block) for path, status, block in found}


@pytest.mark.django_db
def test_the_diff_shows_changed_added_and_removed_code(alice_client, pipeline, bob):
    first = save_code(pipeline, bob, "train", {"train.py": b"import sys\nprint('v1')\n", "old.py": b"x = 1\n"})
    second = save_code(
        pipeline, bob, "train", {"train.py": b"import sys\nprint('v2')\n", "utils.py": f"# {XSS}\n".encode()}
    )
    html = alice_client.get(diff_url(pipeline, second, against=first)).content.decode()
    assert "changed its code" in html
    blocks = file_blocks(html)
    assert set(blocks) == {"code/train/old.py", "code/train/train.py", "code/train/utils.py"}
    status, block = blocks["code/train/train.py"]
    assert status == "changed"
    assert '<span class="d-block text-danger">-print(&#x27;v1&#x27;)</span>' in block
    assert '<span class="d-block text-success">+print(&#x27;v2&#x27;)</span>' in block
    assert f"--- v{first}/code/train/train.py" in block and f"+++ v{second}/code/train/train.py" in block
    assert blocks["code/train/old.py"][0] == "removed" and "-x = 1" in blocks["code/train/old.py"][1]
    assert blocks["code/train/utils.py"][0] == "added" and "+++ v" in blocks["code/train/utils.py"][1]
    assert XSS not in html and "&lt;script&gt;" in html


def test_binary_and_large_files_are_named_not_dumped():
    diffs = code_diff(
        {"code/a/model.bin": b"\0\1\2", "code/a/big.txt": b"a\n"},
        {"code/a/model.bin": b"\0\1\3", "code/a/big.txt": b"b\n" * (CODE_DIFF_MAX_BYTES // 2 + 1)},
        before_name="v1",
        after_name="v2",
    )
    assert [(d.path, d.lines, d.note) for d in diffs] == [
        ("code/a/big.txt", [], f"{CODE_DIFF_MAX_BYTES + 2:,} bytes: too large to show here"),
        ("code/a/model.bin", [], "binary file, 3 bytes"),
    ]


def test_unchanged_files_are_left_out():
    assert code_diff({"code/a/x.py": b"1\n"}, {"code/a/x.py": b"1\n"}, before_name="v1", after_name="v2") == []
