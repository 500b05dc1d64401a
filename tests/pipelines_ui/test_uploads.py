from __future__ import annotations

import io
import os
import stat
import tempfile
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from pipelines_ui import services
from pipelines_ui.models import Pipeline, PipelineVersion
from pipelines_ui.uploads import UploadError, extract_zip, find_pipeline_yaml, fit_filename, save_upload, zip_to_files


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


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"src/a": b"1", "src/a/b": b"2"}, "'src/a' is both a file and a folder"),
        ({"src/a/b": b"2", "src/a": b"1"}, "'src/a' is both a file and a folder"),
        ({"é" * 200 + ".py": b"1"}, "a name longer than 255 bytes"),
    ],
)
def test_a_zip_no_folder_can_hold_is_refused_and_nothing_written(tmp_path, entries, message):
    # Each was a 500 (FileExistsError, IsADirectoryError, ENAMETOOLONG) on every upload form.
    with pytest.raises(UploadError, match=message):
        extract_zip(io.BytesIO(make_zip({"ok.txt": b"fine", **entries})), tmp_path / "out")
    assert not (tmp_path / "out" / "ok.txt").exists()


def test_a_member_name_flagged_utf8_that_is_not_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("abc.txt")
        info.flag_bits |= 0x800  # "the name is UTF-8"
        zf.writestr(info, b"x")
    data = buf.getvalue().replace(b"abc.txt", b"\xff\xfe.txt")  # and it is not
    with pytest.raises(UploadError, match="not a valid zip"):
        extract_zip(io.BytesIO(data), tmp_path / "out")


def test_file_names_are_fitted_to_what_a_file_system_takes():
    assert fit_filename("C:\\Users\\me\\model.pkl", "model") == "model.pkl"
    assert fit_filename("../..", "model") == "model" and fit_filename("a\x00b", "model") == "model"
    long = fit_filename("é" * 200 + ".pkl", "model")
    assert long.endswith(".pkl") and len(long.encode()) <= 255 and long.startswith("é")


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


def test_symlinks_anywhere_are_rejected_and_nothing_written(tmp_path):
    for target in ("/etc/passwd", "../../outside", "pipeline.yml"):
        data = make_zip({"pipeline.yml": b"a"}, symlinks={"src/link": target})
        with pytest.raises(UploadError, match="symbolic link"):
            extract_zip(io.BytesIO(data), tmp_path / "out")
        assert list((tmp_path / "out").iterdir()) == []


def test_a_zip_that_lies_about_its_sizes_is_refused(tmp_path):
    # A member that says "10 bytes" and inflates to 100 kB: never more than the limit is written.
    data = bytearray(make_zip({"bomb.bin": b"\0" * 100_000}))
    header = data.find(b"PK\x01\x02")
    data[header + 24 : header + 28] = (10).to_bytes(4, "little")  # the central directory's size
    with pytest.raises(UploadError, match="bomb.bin"):
        extract_zip(io.BytesIO(bytes(data)), tmp_path / "out", limit_bytes=1000)
    written = tmp_path / "out" / "bomb.bin"
    assert not written.exists() or written.stat().st_size <= 1000


# --- through the views: the import page and a step's code zip ---------------------------

IMPORT_YAML = b"""\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
display_name: uploaded
jobs:
  hello:
    type: command
    code: ./src
    command: python a.py
"""


def hostile_zips(tmp_path) -> dict[str, tuple[bytes, str]]:
    """Name -> (zip bytes, the message the page shows). Each would land in tmp_path if obeyed."""
    good = {"pipeline.yml": IMPORT_YAML, "src/a.py": b"print('a')\n"}
    return {
        "dot-dot": (make_zip({**good, "../../../evil.py": b"x"}), "not allowed in zip paths"),
        "dot-dot-inside": (make_zip({**good, "src/../../../../evil.py": b"x"}), "not allowed in zip paths"),
        "backslashes": (make_zip({**good, "..\\..\\..\\evil.py": b"x"}), "not allowed in zip paths"),
        "absolute": (make_zip({**good, str(tmp_path / "evil.py"): b"x"}), "absolute paths are not allowed"),
        "drive-letter": (make_zip({**good, "C:/evil.py": b"x"}), "absolute paths are not allowed"),
        "symlink-out": (make_zip(good, symlinks={"src/evil.py": "/etc/passwd"}), "symbolic links are not allowed"),
        "symlink-up": (make_zip(good, symlinks={"src/evil.py": "../../../../"}), "symbolic links are not allowed"),
    }


HOSTILE = ["dot-dot", "dot-dot-inside", "backslashes", "absolute", "drive-letter", "symlink-out", "symlink-up"]


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """The folder the views' temporary directories are made in: the test's own."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def assert_nothing_left(tmp_path: Path, private_tmp: Path) -> None:
    assert list(private_tmp.iterdir()) == []  # the upload's temporary folder is gone
    assert not [p for p in tmp_path.rglob("*evil*")]


def test_the_import_page_takes_a_safe_zip(client, alice, team, compute, tmp_path, private_tmp):
    # The hostile zips below differ from this one by one entry.
    client.force_login(alice)
    upload = SimpleUploadedFile("proj.zip", make_zip({"pipeline.yml": IMPORT_YAML, "src/a.py": b"print('a')\n"}))
    response = client.post(reverse("pipeline_import"), {"file": upload, "team": team.pk})
    assert response.status_code == 302
    assert "code/hello/a.py" in Pipeline.objects.get().latest_version.files
    assert_nothing_left(tmp_path, private_tmp)


@pytest.mark.parametrize("kind", HOSTILE)
def test_the_import_page_refuses_a_hostile_zip(client, alice, team, compute, tmp_path, private_tmp, kind):
    data, message = hostile_zips(tmp_path)[kind]
    client.force_login(alice)
    upload = SimpleUploadedFile("proj.zip", data)
    response = client.post(reverse("pipeline_import"), {"file": upload, "team": team.pk})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Pipeline.objects.exists()
    assert_nothing_left(tmp_path, private_tmp)


@pytest.mark.parametrize(
    ("yaml_code", "message"),
    [("../../../etc", "outside the pipeline folder"), ("/etc", "outside the pipeline folder")],
)
def test_the_import_page_refuses_code_from_outside_the_zip(
    client, alice, team, compute, private_tmp, yaml_code, message
):
    client.force_login(alice)
    yaml = IMPORT_YAML.replace(b"code: ./src", b"code: " + yaml_code.encode())
    upload = SimpleUploadedFile("proj.zip", make_zip({"pipeline.yml": yaml, "src/a.py": b"a"}))
    response = client.post(reverse("pipeline_import"), {"file": upload, "team": team.pk})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Pipeline.objects.exists()


def test_the_import_page_refuses_oversize_uploads(client, alice, team, compute, settings, tmp_path, private_tmp):
    settings.STEPWISE_UPLOAD_MAX_BYTES = 2000
    client.force_login(alice)
    cases = [
        # An archive bigger than the limit itself (random bytes do not compress).
        (make_zip({"pipeline.yml": IMPORT_YAML, "src/a.py": os.urandom(5000)}), "larger than 2000 bytes"),
        # A small archive that unpacks past it.
        (make_zip({"pipeline.yml": IMPORT_YAML, "src/a.py": b"\0" * 100_000}), "unpacks to more than 2000 bytes"),
    ]
    for data, message in cases:
        upload = SimpleUploadedFile("proj.zip", data)
        response = client.post(reverse("pipeline_import"), {"file": upload, "team": team.pk})
        assert response.status_code == 200
        assert message in response.content.decode()
    settings.STEPWISE_YAML_MAX_BYTES = 100
    upload = SimpleUploadedFile("pipeline.yml", IMPORT_YAML)
    response = client.post(reverse("pipeline_import"), {"file": upload, "team": team.pk})
    assert "larger than 100 bytes" in response.content.decode()
    assert not Pipeline.objects.exists()
    assert_nothing_left(tmp_path, private_tmp)


def step_with_code_zip(data: bytes) -> dict:
    return {
        "base_version": "1",
        "name": "score",
        "command": "python a.py",
        "max_retries": "0",
        "in-TOTAL_FORMS": "0",
        "in-INITIAL_FORMS": "0",
        "out-TOTAL_FORMS": "0",
        "out-INITIAL_FORMS": "0",
        "code-TOTAL_FORMS": "0",
        "code-INITIAL_FORMS": "0",
        "code_zip": SimpleUploadedFile("code.zip", data),
    }


def test_a_step_takes_a_safe_code_zip(client, alice, pipeline, tmp_path, private_tmp):
    client.force_login(alice)
    data = make_zip({"src/a.py": b"print('a')\n"})
    response = client.post(reverse("step_create", args=[pipeline.pk]), step_with_code_zip(data))
    assert response.status_code == 302
    pipeline.refresh_from_db()
    assert services.version_spec_with_files(pipeline.latest_version).step_files("score") == {"a.py": b"print('a')\n"}
    assert_nothing_left(tmp_path, private_tmp)


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_step_refuses_a_hostile_code_zip(client, alice, pipeline, tmp_path, private_tmp, kind):
    data, message = hostile_zips(tmp_path)[kind]
    client.force_login(alice)
    response = client.post(reverse("step_create", args=[pipeline.pk]), step_with_code_zip(data))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 1
    assert_nothing_left(tmp_path, private_tmp)


def test_a_step_refuses_an_oversize_code_zip(client, alice, pipeline, settings, tmp_path, private_tmp):
    settings.STEPWISE_UPLOAD_MAX_BYTES = 2000
    client.force_login(alice)
    data = make_zip({"a.py": b"\0" * 100_000})
    response = client.post(reverse("step_create", args=[pipeline.pk]), step_with_code_zip(data))
    assert response.status_code == 400
    assert "unpacks to more than 2000 bytes" in response.content.decode()
    assert PipelineVersion.objects.filter(pipeline=pipeline).count() == 1
    assert_nothing_left(tmp_path, private_tmp)
