"""The local artifact store keeps nothing of an output it failed to store."""

from __future__ import annotations

import os
import threading
from pathlib import Path

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


@pytest.mark.parametrize("leave", [False, True], ids=["moved", "left-if-stored"])
@pytest.mark.parametrize("kind", ["uri_folder", "uri_file"])
def test_an_output_that_is_itself_a_link_is_refused_and_what_it_points_at_is_untouched(tmp_path, kind, leave):
    # A step can replace its (empty) output folder by a link to, say, the server's var/: the
    # worker, outside the sandbox, must not store (and so serve) that folder, nor chmod its files.
    secret = tmp_path / "var"
    secret.mkdir()
    (secret / "secret.key").write_text("the server's secret")
    mode = (secret / "secret.key").stat().st_mode
    step_outputs = tmp_path / "work" / "outputs"
    step_outputs.mkdir(parents=True)
    output = step_outputs / "data"
    os.symlink(secret if kind == "uri_folder" else secret / "secret.key", output)
    store = LocalStore(tmp_path / "store")

    with pytest.raises(ArtifactError, match="symbolic link"):
        store.put(output, kind, leave_if_stored=leave)

    assert not (tmp_path / "store" / "objects").exists()
    assert list((tmp_path / "store" / "staging").iterdir()) == []
    assert (secret / "secret.key").stat().st_mode == mode
    assert (secret / "secret.key").read_text() == "the server's secret"


def test_a_link_to_a_folder_inside_an_output_is_refused(tmp_path):
    # os.walk lists such a link among the folders, not the files, and does not go into it.
    secret = tmp_path / "var"
    secret.mkdir()
    (secret / "secret.key").write_text("the server's secret")
    output = tmp_path / "out"
    output.mkdir()
    (output / "model.bin").write_bytes(b"weights")
    os.symlink(secret, output / "escape")

    with pytest.raises(ArtifactError, match="symbolic link"):
        LocalStore(tmp_path / "store").put(output, "uri_folder")
    assert not (tmp_path / "store" / "objects").exists()


def test_an_output_under_an_outputs_folder_that_is_a_link_is_refused(tmp_path):
    # The step replaced its outputs/ folder by a link to var/: its uri_file output `secret.key`
    # would then be the server's file, moved out of var/ into the store.
    secret = tmp_path / "var"
    secret.mkdir()
    (secret / "secret.key").write_text("the server's secret")
    workdir = tmp_path / "work"
    workdir.mkdir()
    os.symlink(secret, workdir / "outputs")

    with pytest.raises(ArtifactError, match="symbolic link"):
        LocalStore(tmp_path / "store").put(workdir / "outputs" / "secret.key", "uri_file")
    assert (secret / "secret.key").read_text() == "the server's secret"
    assert not (tmp_path / "store" / "objects").exists()


@pytest.mark.parametrize("leave", [False, True], ids=["moved", "left-if-stored"])
def test_a_fifo_inside_an_output_is_refused_without_hanging_the_worker(tmp_path, leave):
    # A step can mkfifo in its output folder: the worker, hashing what it left, would open the
    # FIFO and wait for a writer that never comes (the step's processes are gone): a hung worker.
    output = tmp_path / "out"
    output.mkdir()
    (output / "model.bin").write_bytes(b"weights")
    os.mkfifo(output / "pipe")

    result: list[BaseException] = []

    def put():
        try:
            LocalStore(tmp_path / "store").put(output, "uri_folder", leave_if_stored=leave)
        except BaseException as exc:  # noqa: BLE001 - what the thread saw, for the assertion below
            result.append(exc)

    thread = threading.Thread(target=put, daemon=True)
    thread.start()
    thread.join(timeout=5)
    if thread.is_alive():
        # Let the hung open return, so that the test process can end.
        for fifo in [*(tmp_path / "store" / "staging").glob("*/pipe"), output / "pipe"]:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(timeout=5)
        pytest.fail("storing an output with a FIFO in it hung")
    assert len(result) == 1 and isinstance(result[0], ArtifactError)
    assert "not a regular file" in str(result[0])
    assert not (tmp_path / "store" / "objects").exists()
    assert list((tmp_path / "store" / "staging").iterdir()) == []


@pytest.mark.parametrize("kind", ["uri_folder", "uri_file"])
def test_content_the_store_holds_already_is_left_where_it_is_when_the_caller_removes_it(tmp_path, kind):
    store = LocalStore(tmp_path / "store")

    def output(name: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "data.txt").write_text("same")
        return folder if kind == "uri_folder" else folder / "data.txt"

    plain = store.put(output("plain"), kind)
    first, second = output("first"), output("second")
    assert store.put(first, kind, leave_if_stored=True) == plain
    assert first.exists(), "already stored by the plain put: left for its caller"
    store.remove(plain.sha256)

    assert store.put(second, kind, leave_if_stored=True) == plain
    assert not second.exists(), "not stored: moved in"
    assert store.intact(plain.sha256, verify_content=True)
    assert list((tmp_path / "store" / "staging").iterdir()) == []


def test_an_empty_output_the_store_lacks_is_stored_when_it_may_be_left(tmp_path):
    store = LocalStore(tmp_path / "store")
    output = tmp_path / "out"
    output.mkdir()
    manifest = store.put(output, "uri_folder", leave_if_stored=True)
    assert store.folder(manifest.sha256).is_dir() and not output.exists()


def test_a_damaged_stored_copy_is_replaced_by_an_output_that_may_be_left(tmp_path):
    store = LocalStore(tmp_path / "store")
    first = tmp_path / "first"
    first.mkdir()
    (first / "data.txt").write_text("good")
    manifest = store.put(first, "uri_folder")
    stored = store.folder(manifest.sha256) / "data.txt"
    stored.chmod(0o644)
    stored.write_text("evil")

    again = tmp_path / "again"
    again.mkdir()
    (again / "data.txt").write_text("good")
    assert store.put(again, "uri_folder", leave_if_stored=True) == manifest
    assert stored.read_text() == "good" and not again.exists()
