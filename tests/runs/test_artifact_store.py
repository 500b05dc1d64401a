"""The local artifact store keeps nothing of an output it failed to store."""

from __future__ import annotations

import os

import pytest

from runs.artifact_files import ArtifactError
from runs.store_local import LocalStore


def test_a_failed_put_leaves_no_staged_copy_behind(tmp_path):
    store = LocalStore(tmp_path / "store")
    output = tmp_path / "out"
    output.mkdir()
    (output / "model.bin").write_bytes(b"\0" * 4096)
    os.symlink("/etc/passwd", output / "escape")

    with pytest.raises(ArtifactError, match="symbolic link"):
        store.put(output, "uri_folder")

    assert list((tmp_path / "store" / "staging").iterdir()) == []
    assert not (tmp_path / "store" / "objects").exists()


def test_a_put_stores_the_output_once_by_content(tmp_path):
    store = LocalStore(tmp_path / "store")
    manifests = []
    for name in ("a", "b"):
        output = tmp_path / name
        output.mkdir()
        (output / "data.txt").write_text("same")
        manifests.append(store.put(output, "uri_folder"))
    assert manifests[0] == manifests[1]
    assert store.files(manifests[0].sha256) == ["data.txt"]
    assert list((tmp_path / "store" / "staging").iterdir()) == []
