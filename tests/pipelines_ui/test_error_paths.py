"""Import errors name files inside the upload, never a path of the server (its temporary folder)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from pipelines_ui.models import Pipeline

GOOD = b"""\
type: pipeline
jobs:
  hello:
    type: command
    command: echo hello
"""


def zipped(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def job(extra: str) -> bytes:
    return GOOD + extra.encode()


# (upload name, its bytes, what the page says, the file it names)
BROKEN = {
    "broken yaml": ("pipeline.yml", b"type: pipeline\njobs: [\n", "invalid YAML", "pipeline.yml"),
    "broken yaml in a zip": (
        "proj.zip",
        zipped({"proj/pipeline.yml": b"type: pipeline\njobs: [\n"}),
        "invalid YAML",
        "proj/pipeline.yml",
    ),
    "broken component": (
        "proj.zip",
        zipped(
            {
                "pipeline.yml": b"type: pipeline\njobs:\n  a:\n    component: ./components/c.yml\n",
                "components/c.yml": b"type: command\ncommand: [\n",
            }
        ),
        "invalid YAML",
        "components/c.yml",
    ),
    "component outside": (
        "proj.zip",
        zipped({"pipeline.yml": b"type: pipeline\njobs:\n  a:\n    component: ../../../c.yml\n"}),
        "outside the pipeline folder",
        "pipeline.yml",
    ),
    "code outside": ("pipeline.yml", job("    code: /etc\n"), "outside the pipeline folder", "pipeline.yml"),
    "data outside": (
        "pipeline.yml",
        GOOD.replace(b"jobs:", b"inputs:\n  d:\n    type: uri_folder\n    path: ../../../../etc\njobs:"),
        "outside the pipeline folder",
        "pipeline.yml",
    ),
    "missing code": ("pipeline.yml", job("    code: ./src\n"), "does not exist", "pipeline.yml"),
    "not utf-8": ("pipeline.yml", b"type: pipeline\ndisplay_name: \xff\n", "not UTF-8", "pipeline.yml"),
}


@pytest.fixture
def server_tmp(tmp_path, monkeypatch) -> Path:
    """The views' temporary folders, under a name no page may show."""
    folder = tmp_path / "server-private-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def assert_no_server_path(text: str, server_tmp: Path) -> None:
    for secret in (str(server_tmp), "server-private-tmp", "stepwise-import-", str(settings.BASE_DIR)):
        assert secret not in text


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_import_page_names_files_inside_the_upload_only(client, alice, team, compute, server_tmp, case):
    name, data, message, file = BROKEN[case]
    client.force_login(alice)
    response = client.post(reverse("pipeline_import"), {"file": SimpleUploadedFile(name, data), "team": team.pk})
    page = response.content.decode()
    assert response.status_code == 200
    assert message in page
    problems = response.context["errors"]
    assert file in {p.file for p in problems}
    assert all(not p.file.startswith("/") for p in problems)
    assert_no_server_path(page, server_tmp)
    assert not Pipeline.objects.exists()


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("proj.zip", b"PK\x03\x04 not really a zip", "not a valid zip file"),
        ("proj.zip", zipped({"readme.txt": b"hi", "notes.txt": b"x"}), "no pipeline.yml"),
        ("pipeline.txt", b"type: pipeline", "upload a .yml, .yaml or .zip"),
    ],
    # Not the bytes: a zip holds the time it was made, and every pytest-xdist process must collect
    # the same test ids.
    ids=["not a zip", "zip without pipeline.yml", "not yaml"],
)
def test_upload_errors_name_no_server_path(client, alice, team, compute, server_tmp, name, data, message):
    client.force_login(alice)
    response = client.post(reverse("pipeline_import"), {"file": SimpleUploadedFile(name, data), "team": team.pk})
    page = response.content.decode()
    assert message in page
    assert_no_server_path(page, server_tmp)


def test_the_cli_names_the_users_own_file_and_no_other_folder(tmp_path, capsys, db):
    folder = tmp_path / "my-project"
    folder.mkdir()
    path = folder / "pipeline.yml"
    path.write_bytes(job("    code: ../../outside\n"))
    with pytest.raises(SystemExit) as info:
        call_command("pipelines", "validate", str(path))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"{path}:6: job 'hello'" in err and "outside the pipeline folder" in err
    # The file is named once, as the user gave it; the message itself names no folder.
    assert err.count(str(folder)) == 1
