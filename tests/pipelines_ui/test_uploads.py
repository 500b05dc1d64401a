from __future__ import annotations

import io
import stat
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from pipelines_ui.uploads import UploadError, extract_zip, find_pipeline_yaml, save_upload, zip_to_files


def make_zip(entries: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def test_extracts_files_into_dest(tmp_path):
    data = make_zip({"pipeline.yml": b"a", "code/prep/x.py": b"b", "dir/": b""})
    files = extract_zip(io.BytesIO(data), tmp_path / "out")
    assert sorted(str(f) for f in files) == ["code/prep/x.py", "pipeline.yml"]
    assert (tmp_path / "out" / "code" / "prep" / "x.py").read_bytes() == b"b"


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/etc/evil.txt", "..\\evil.txt", "C:/evil.txt"])
def test_zip_slip_is_rejected_and_nothing_written(tmp_path, name):
    data = make_zip({"ok.txt": b"fine", name: b"evil"})
    with pytest.raises(UploadError):
        extract_zip(io.BytesIO(data), tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "ok.txt").exists()


def test_symlinks_are_rejected(tmp_path):
    data = make_zip({"pipeline.yml": b"a"}, symlinks={"link": "/etc/passwd"})
    with pytest.raises(UploadError, match="symbolic link"):
        extract_zip(io.BytesIO(data), tmp_path / "out")


def test_too_many_bytes_is_rejected(tmp_path):
    data = make_zip({"big.bin": b"\0" * 10_000})
    with pytest.raises(UploadError, match="more than 1000 bytes"):
        extract_zip(io.BytesIO(data), tmp_path / "out", limit_bytes=1000)


def test_too_many_files_is_rejected(tmp_path):
    data = make_zip({f"f{i}.txt": b"x" for i in range(5)})
    with pytest.raises(UploadError, match="more than 3 files"):
        extract_zip(io.BytesIO(data), tmp_path / "out", limit_files=3)


def test_upload_limit_comes_from_settings(tmp_path, settings):
    settings.STEPWISE_UPLOAD_MAX_BYTES = 100
    with pytest.raises(UploadError):
        extract_zip(io.BytesIO(make_zip({"a": b"x" * 500})), tmp_path / "out")


def test_not_a_zip(tmp_path):
    with pytest.raises(UploadError, match="not a valid zip"):
        extract_zip(io.BytesIO(b"hello"), tmp_path / "out")


def test_find_pipeline_yaml_in_single_top_folder(tmp_path):
    extract_zip(io.BytesIO(make_zip({"proj/pipeline.yml": b"a", "proj/c.yml": b"b"})), tmp_path)
    assert find_pipeline_yaml(tmp_path) == tmp_path / "proj" / "pipeline.yml"


def test_find_pipeline_yaml_missing(tmp_path):
    extract_zip(io.BytesIO(make_zip({"a.yml": b"a", "b.yml": b"b"})), tmp_path)
    with pytest.raises(UploadError, match="no pipeline.yml"):
        find_pipeline_yaml(tmp_path)


def test_save_upload_yaml_keeps_basename_only(tmp_path):
    uploaded = SimpleUploadedFile("../../x/my pipeline.yml", b"type: pipeline\n")
    path = save_upload(uploaded, tmp_path)
    assert path == tmp_path / "upload" / "my pipeline.yml"
    assert path.read_bytes() == b"type: pipeline\n"


def test_save_upload_rejects_other_types(tmp_path):
    with pytest.raises(UploadError, match=".yml, .yaml or .zip"):
        save_upload(SimpleUploadedFile("x.exe", b"MZ"), tmp_path)


def test_zip_to_files_unwraps_single_folder():
    files = zip_to_files(io.BytesIO(make_zip({"src/main.py": b"print(1)", "src/lib/u.py": b"u"})))
    assert files == {"main.py": b"print(1)", "lib/u.py": b"u"}
