"""The transfer copier on local trees: checksums, resume, conflicts, and its clear failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from runs.transfer import Transfer, TransferError, local_tree


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    return root


def copier() -> tuple[Transfer, list[str]]:
    said: list[str] = []
    return Transfer(attempt=None, step=None, timeout_s=None, say=said.extend), said


def test_a_folder_and_a_file_are_merged_with_their_sizes_counted(tmp_path):
    a = tree(tmp_path / "a", {"x.csv": b"1,2\n", "sub/y.txt": b"yy"})
    b = tree(tmp_path / "b", {"notes.txt": b"n"})
    out = tmp_path / "out"
    out.mkdir()
    t, said = copier()
    tally = t.copy(
        [("a", local_tree(str(a), "input a")), ("b", local_tree(str(b / "notes.txt"), "input b"))],
        local_tree(str(out), "output o"),
        single_file=False,
        mode="merge_with_overwrite",
    )
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["notes.txt", "sub/y.txt", "x.csv"]
    assert (tally.files, tally.bytes, tally.skipped) == (3, 7, 0)
    assert any(line.startswith("[transfer] copied sub/y.txt (2 bytes, sha256 ") for line in said)


def test_a_resumed_copy_skips_identical_files_and_rewrites_changed_ones(tmp_path):
    src = tree(tmp_path / "src", {"same.bin": b"s" * 10, "changed.bin": b"new"})
    dest = tree(tmp_path / "dest", {"same.bin": b"s" * 10, "changed.bin": b"old!"})
    t, said = copier()
    tally = t.copy(
        [("s", local_tree(str(src), "input s"))],
        local_tree(str(dest), "d"),
        single_file=False,
        mode="merge_with_overwrite",
    )
    assert (tally.files, tally.bytes, tally.skipped, tally.skipped_bytes) == (1, 3, 1, 10)
    assert (dest / "changed.bin").read_bytes() == b"new"
    assert any("skipped same.bin: already there with sha256" in line for line in said)


def test_fail_if_conflict_names_the_file(tmp_path):
    a = tree(tmp_path / "a", {"x.csv": b"1"})
    b = tree(tmp_path / "b", {"x.csv": b"2"})
    out = tmp_path / "out"
    out.mkdir()
    t, _ = copier()
    sources = [("a", local_tree(str(a), "input a")), ("b", local_tree(str(b), "input b"))]
    with pytest.raises(TransferError, match="conflict: another input wrote x.csv with other content"):
        t.copy(sources, local_tree(str(out), "o"), single_file=False, mode="fail_if_conflict")
    # Identical files are no conflict.
    (b / "x.csv").write_bytes(b"1")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    t, _ = copier()
    assert t.copy(sources, local_tree(str(fresh), "o"), single_file=False, mode="fail_if_conflict").skipped == 1


def test_a_missing_source_is_named(tmp_path):
    t, _ = copier()
    with pytest.raises(TransferError, match="input a does not exist"):
        t.copy(
            [("a", local_tree(str(tmp_path / "nope"), "input a"))],
            local_tree(str(tmp_path), "o"),
            single_file=False,
            mode="merge_with_overwrite",
        )


def test_a_copy_that_reads_back_differently_fails_and_is_removed(tmp_path, monkeypatch):
    src = tree(tmp_path / "src", {"x.bin": b"payload"})
    dest = tmp_path / "dest"
    dest.mkdir()
    t, _ = copier()
    real = Transfer.sha256

    def corrupt_read_back(self, tree_, path):
        # The destination's copy reads back as other bytes: a disk or network that flipped them.
        return "0" * 64 if path.startswith(str(dest)) else real(self, tree_, path)

    monkeypatch.setattr(Transfer, "sha256", corrupt_read_back)
    with pytest.raises(
        TransferError, match=r"checksum mismatch for 'x.bin' in d: copied sha256 [0-9a-f]{64}, read back 0{64}"
    ):
        t.copy(
            [("s", local_tree(str(src), "input s"))],
            local_tree(str(dest), "d"),
            single_file=False,
            mode="merge_with_overwrite",
        )
    assert not (dest / "x.bin").exists()


def test_a_uri_file_output_takes_exactly_one_file(tmp_path):
    src = tree(tmp_path / "src", {"a": b"1", "b": b"2"})
    t, _ = copier()
    with pytest.raises(TransferError, match="is a uri_file, but the sources hold 2 files"):
        t.copy(
            [("s", local_tree(str(src), "input s"))],
            local_tree(str(tmp_path / "o"), "output o"),
            single_file=True,
            mode="merge_with_overwrite",
        )


class FencedAttempt:
    """An attempt that learns at its first heartbeat that it was canceled or superseded."""

    stop_reason = ""

    def flush(self, *, force: bool = False) -> bool:
        return False


def test_a_canceled_attempt_stops_copying_at_its_next_heartbeat(tmp_path, monkeypatch):
    from runs import transfer

    monkeypatch.setattr(transfer, "TICK_S", 0.0)
    src = tree(tmp_path / "src", {"a": b"1", "b": b"2"})
    dest = tmp_path / "dest"
    dest.mkdir()
    t = Transfer(attempt=FencedAttempt(), step=None, timeout_s=None, say=lambda lines: None)
    with pytest.raises(transfer._Stopped):
        t.copy(
            [("s", local_tree(str(src), "s"))], local_tree(str(dest), "d"), single_file=False, mode="fail_if_conflict"
        )
    assert t.tally.files == 0


def test_a_link_in_a_local_datastore_leads_nowhere_outside_it(tmp_path):
    from runs.transfer import Tree

    outside = tree(tmp_path / "outside", {"secret.txt": b"s"})
    lake = tree(tmp_path / "lake", {"raw/ok.txt": b"ok"})
    (lake / "raw" / "peek").symlink_to(outside)
    fenced = Tree(fs=local_tree(str(lake), "").fs, root=str(lake / "raw"), label="source 'raw'", fence=lake.resolve())
    t, _ = copier()
    with pytest.raises(TransferError, match="source 'raw': 'peek' leads outside its datastore"):
        t.copy([("s", fenced)], local_tree(str(tmp_path / "o"), "o"), single_file=False, mode="merge_with_overwrite")

    # Nor is anything written through one.
    src = tree(tmp_path / "src", {"peek/new.txt": b"n"})
    sink = Tree(fs=fenced.fs, root=str(lake / "raw"), label="sink 'raw'", fence=lake.resolve())
    with pytest.raises(TransferError, match="'peek/new.txt' would be written outside its datastore"):
        t.copy([("s", local_tree(str(src), "input s"))], sink, single_file=False, mode="merge_with_overwrite")
    assert not (outside / "new.txt").exists()
