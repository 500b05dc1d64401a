"""Data pages: list, asset page and preview of hostile files, downloads, uploads in chunks, Register as data."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.urls import reverse

from pipelines_ui.models import Role
from runs import artifacts
from runs.data_assets import data_create_from_path
from runs.data_preview import MAX_READ_BYTES, MAX_ROWS, neutralise
from runs.models import Artifact, DataVersion, StepOutput, StepState
from tests.conftest import make_user
from tests.runs.conftest import set_step

pytestmark = pytest.mark.django_db

HOSTILE_CSV = (
    'name,formula,note\n<script>alert(1)</script>,"=HYPERLINK(""http://evil"",""x"")","<img src=x onerror=alert(2)>"\n'
    "plain,+SUM(A1:A2),@cmd\n"
)


def make_version(team, tmp_path: Path, files: dict[str, bytes], name: str = "hostile", type_: str = "uri_folder"):
    root = tmp_path / f"src-{name}"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    path = root / next(iter(files)) if type_ == "uri_file" else root
    return data_create_from_path(team=team, name=name, path=path, type_=type_)


def login(client, user):
    client.force_login(user)
    return client


def test_empty_list_says_how_to_create(client, alice):
    page = login(client, alice).get(reverse("data_list")).content.decode()
    assert "No data assets yet" in page and "python manage.py data create" in page and "Upload data" in page


def test_list_and_search(client, alice, team, tmp_path):
    make_version(team, tmp_path, {"a.txt": b"a"}, name="digits")
    make_version(team, tmp_path, {"b.txt": b"b"}, name="weather")
    page = login(client, alice).get(reverse("data_list"), {"q": "dig"}).content.decode()
    assert "digits" in page and "weather" not in page


def test_outsiders_see_nothing(client, charlie, team, tmp_path):
    version = make_version(team, tmp_path, {"a.csv": b"a\n1\n"})
    login(client, charlie)
    assert "hostile" not in client.get(reverse("data_list")).content.decode()
    assert client.get(reverse("data_detail", args=[version.asset_id])).status_code == 404
    file_url = reverse("data_file", args=[version.asset_id, "1"]) + "?path=a.csv"
    assert client.get(file_url).status_code == 404


def test_hostile_csv_preview_is_escaped_text(client, alice, team, tmp_path):
    version = make_version(team, tmp_path, {"rows.csv": HOSTILE_CSV.encode()})
    page = login(client, alice).get(reverse("data_detail", args=[version.asset_id])).content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert 'id="preview-table"' in page


def test_csv_download_neutralises_formula_cells(client, alice, team, tmp_path):
    version = make_version(team, tmp_path, {"rows.csv": HOSTILE_CSV.encode()})
    url = reverse("data_file", args=[version.asset_id, "1"]) + "?path=rows.csv"
    response = login(client, alice).get(url)
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[1][1] == '\'=HYPERLINK("http://evil","x")'
    assert rows[2][1:] == ["'+SUM(A1:A2)", "'@cmd"]
    assert rows[1][0] == "<script>alert(1)</script>"  # not a formula: left as it was
    assert response["X-Content-Type-Options"] == "nosniff" and "attachment" in response["Content-Disposition"]


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@x", "\tx", "\rx"])
def test_neutralise(cell):
    assert neutralise(cell) == "'" + cell and neutralise("plain") == "plain"


def test_a_large_file_is_previewed_with_bounded_work(client, alice, team, tmp_path, monkeypatch):
    big = b"col1,col2\n" + b"1,2\n" * 2_000_000  # 8 MB
    version = make_version(team, tmp_path, {"big.csv": big, "long.txt": b"x" * 5_000_000})
    read: list[int] = []
    real_open = artifacts.open_stored_file

    class Counting:
        def __init__(self, handle):
            self.handle = handle

        def read(self, n=-1):
            data = self.handle.read(n)
            read.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(artifacts, "open_stored_file", lambda a, rel: Counting(real_open(a, rel)))
    page = login(client, alice).get(reverse("data_detail", args=[version.asset_id])).content.decode()
    assert sum(read) <= MAX_READ_BYTES + 1
    assert page.count("<td>1</td>") == MAX_ROWS and "Only the first rows are shown" in page
    read.clear()
    page = client.get(reverse("data_detail", args=[version.asset_id]), {"file": "long.txt"}).content.decode()
    assert sum(read) <= MAX_READ_BYTES + 1 and "Only the beginning is shown" in page


def test_corrupt_parquet_is_reported_not_raised(client, alice, team, tmp_path):
    version = make_version(team, tmp_path, {"t.parquet": b"PAR1 this is not parquet PAR1"})
    page = login(client, alice).get(reverse("data_detail", args=[version.asset_id])).content.decode()
    assert "not a readable Parquet file" in page


def test_parquet_shows_its_first_rows_escaped(client, alice, team, tmp_path):
    table = pa.table({"<b>name</b>": [f"row-{i}" for i in range(MAX_ROWS + 50)], "score": range(MAX_ROWS + 50)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    version = make_version(team, tmp_path, {"t.parquet": sink.getvalue().to_pybytes()})
    page = login(client, alice).get(reverse("data_detail", args=[version.asset_id])).content.decode()
    assert "&lt;b&gt;name&lt;/b&gt;" in page and "<b>name</b>" not in page
    assert "<td>row-0</td>" in page and f"<td>row-{MAX_ROWS - 1}</td>" in page
    assert f"<td>row-{MAX_ROWS}</td>" not in page


PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000050001a5f645400000000049454e44ae426082"
)


def test_images_are_thumbnails_and_svg_is_text(client, alice, team, tmp_path):
    version = make_version(team, tmp_path, {"a.png": PNG, "b.svg": b"<svg onload=alert(1)></svg>"})
    login(client, alice)
    page = client.get(reverse("data_detail", args=[version.asset_id]), {"file": "a.png"}).content.decode()
    assert 'id="preview-image"' in page
    image = client.get(reverse("data_file", args=[version.asset_id, "1"]) + "?path=a.png&inline=1")
    assert image["Content-Type"] == "image/png" and image["X-Content-Type-Options"] == "nosniff"
    svg_page = client.get(reverse("data_detail", args=[version.asset_id]), {"file": "b.svg"}).content.decode()
    assert "&lt;svg onload=alert(1)&gt;" in svg_page and 'id="preview-image"' not in svg_page
    svg = client.get(reverse("data_file", args=[version.asset_id, "1"]) + "?path=b.svg&inline=1")
    assert svg["Content-Type"] == "application/octet-stream" and "attachment" in svg["Content-Disposition"]


def test_a_file_not_in_the_version_is_404(client, alice, team, tmp_path):
    version = make_version(team, tmp_path, {"a.txt": b"a"})
    url = reverse("data_file", args=[version.asset_id, "1"]) + "?path=../../etc/passwd"
    assert login(client, alice).get(url).status_code == 404


def test_zip_download(client, alice, team, tmp_path):
    version = make_version(team, tmp_path, {"a.txt": b"a", "d/b.txt": b"b"})
    response = login(client, alice).get(reverse("data_download", args=[version.asset_id, "1"]))
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist()
    assert sorted(names) == ["a.txt", "d/b.txt"]


def test_archive_needs_an_editor(client, team, tmp_path, alice):
    version = make_version(team, tmp_path, {"a.txt": b"a"})
    vera = make_user("vera", team, Role.VIEWER)
    url = reverse("data_archive", args=[version.asset_id, "1"])
    assert login(client, vera).post(url).status_code == 403
    version.refresh_from_db()
    assert not version.archived
    assert login(client, alice).post(url).status_code == 302
    version.refresh_from_db()
    assert version.archived


# ---- uploads ------------------------------------------------------------------------------


def start_upload(client, filename: str, size: int) -> str:
    response = client.post(reverse("data_upload_start"), {"filename": filename, "size": size})
    assert response.status_code == 201, response.content
    return response.json()["id"]


def put(client, upload_id: str, offset: int, data: bytes):
    url = reverse("data_upload_chunk", args=[upload_id]) + f"?offset={offset}"
    return client.put(url, data, content_type="application/octet-stream")


def test_chunked_upload_resumes_and_creates_a_version(client, bob, team, tmp_path, settings):
    settings.STEPWISE_WORKDIR = tmp_path / "work"
    login(client, bob)
    payload = b"a,b\n" + b"1,2\n" * 1000
    upload_id = start_upload(client, "../../rows.csv", len(payload))
    assert put(client, upload_id, 0, payload[:1000]).json()["offset"] == 1000
    # The connection drops; the page asks where to resume; a stale chunk is refused with the offset.
    assert client.get(reverse("data_upload_chunk", args=[upload_id])).json()["offset"] == 1000
    stale = put(client, upload_id, 0, payload[:1000])
    assert stale.status_code == 409 and stale.json()["offset"] == 1000
    assert put(client, upload_id, 1000, payload[1000:]).json()["offset"] == len(payload)
    response = client.post(
        reverse("data_upload"),
        {"team": team.pk, "name": "uploaded", "version": "", "type": "uri_file", "upload_id": upload_id},
    )
    assert response.status_code == 302, response.content.decode()
    version = DataVersion.objects.get(asset__name="uploaded")
    assert version.source == DataVersion.Source.UPLOAD and version.version == "1"
    assert artifacts.artifact_path(version.artifact).read_bytes() == payload
    assert artifacts.stored_files(version.artifact) == ["rows.csv"]


def test_an_incomplete_upload_creates_nothing(client, bob, team, tmp_path, settings):
    settings.STEPWISE_WORKDIR = tmp_path / "work"
    login(client, bob)
    upload_id = start_upload(client, "x.bin", 10)
    put(client, upload_id, 0, b"12345")
    response = client.post(
        reverse("data_upload"), {"team": team.pk, "name": "x", "type": "uri_file", "upload_id": upload_id}
    )
    assert response.status_code == 200 and "not complete yet" in response.content.decode()
    assert not DataVersion.objects.exists()
    assert put(client, upload_id, 5, b"1234567").status_code == 400  # more than announced


def test_uploads_belong_to_their_user_and_need_an_editor(client, bob, alice, team, tmp_path, settings):
    settings.STEPWISE_WORKDIR = tmp_path / "work"
    upload_id = start_upload(login(client, bob), "x.bin", 3)
    assert put(login(client, alice), upload_id, 0, b"abc").status_code == 404
    vera = make_user("vera", team, Role.VIEWER)
    login(client, vera)
    assert client.post(reverse("data_upload_start"), {"filename": "x", "size": 1}).status_code == 403
    assert client.get(reverse("data_upload")).status_code == 403


def test_upload_start_names_bad_input(client, bob, tmp_path, settings):
    settings.STEPWISE_WORKDIR = tmp_path / "work"
    login(client, bob)
    assert (
        "whole number" in client.post(reverse("data_upload_start"), {"filename": "x", "size": "lots"}).json()["detail"]
    )
    assert "file name" in client.post(reverse("data_upload_start"), {"filename": "", "size": 1}).json()["detail"]


def test_upload_page_renders_the_progress_bar(client, bob):
    page = login(client, bob).get(reverse("data_upload")).content.decode()
    assert 'id="upload-progress"' in page and "js/data_upload.js" in page and "<script>" not in page


# ---- Register as data -----------------------------------------------------------------


def test_register_as_data_from_the_run_page(client, run, alice, tmp_path):
    src = tmp_path / "out"
    src.mkdir()
    (src / "rows.csv").write_text("a\n1\n")
    artifact = artifacts.store_output(src, Artifact.Kind.FOLDER)
    step = set_step(run, "prep", state=StepState.SUCCEEDED)
    StepOutput.objects.create(step_run=step, name="data", artifact=artifact)
    login(client, alice)
    page = client.get(reverse("run_step", args=[run.pk, "prep"])).content.decode()
    assert "Register as data" in page
    response = client.post(reverse("step_output_register", args=[run.pk, "prep", "data"]), {"name": "prepared"})
    version = DataVersion.objects.get(asset__name="prepared")
    assert response.status_code == 302 and response["Location"].endswith(f"/data/{version.asset_id}/?v=1")
    assert version.artifact == artifact and version.step_output.step_run == step


def test_register_as_data_needs_an_editor(client, run, team):
    vera = make_user("vera", team, Role.VIEWER)
    response = login(client, vera).post(reverse("step_output_register", args=[run.pk, "prep", "data"]))
    assert response.status_code == 403 and not DataVersion.objects.exists()


def test_the_run_page_names_the_exact_version_read(client, alice, team, tmp_path):
    from runs.services import run_create
    from tests.runs.conftest import make_pipeline

    make_version(team, tmp_path, {"a.txt": b"a"}, name="digits")
    yaml_text = (
        "type: pipeline\ninputs:\n  raw: {type: uri_folder, path: 'azureml:digits@latest'}\n"
        "jobs:\n  read:\n    command: ls ${{inputs.d}}\n    inputs: {d: '${{parent.inputs.raw}}'}\n"
    )
    pipeline = make_pipeline(team, alice, name="reader", yaml_text=yaml_text)
    run = run_create(version=pipeline.latest_version, user=alice)
    page = login(client, alice).get(reverse("run_detail", args=[run.pk])).content.decode()
    assert "raw=digits:1" in page and 'title="azureml:digits@latest"' in page


def test_the_pipeline_page_shows_an_inputs_asset_reference(client, alice, team):
    from tests.runs.conftest import make_pipeline

    yaml_text = (
        "type: pipeline\ninputs:\n  raw: {type: uri_folder, path: 'azureml:digits@latest'}\n"
        "jobs:\n  read:\n    command: ls ${{inputs.d}}\n    inputs: {d: '${{parent.inputs.raw}}'}\n"
    )
    pipeline = make_pipeline(team, alice, name="reader", yaml_text=yaml_text)
    vera = make_user("vera", team, Role.VIEWER)  # the read-only table (editors get the interface form)
    page = login(client, vera).get(reverse("pipeline_detail", args=[pipeline.pk])).content.decode()
    assert "<code>azureml:digits@latest</code>" in page


def test_gc_removes_abandoned_uploads_only(bob, tmp_path, settings):
    import os
    import time

    from runs import data_assets, gc

    settings.STEPWISE_WORKDIR = tmp_path / "work"
    from runs.data_views import upload_begin

    old = upload_begin(user=bob, filename="old.bin", size=3)
    fresh = upload_begin(user=bob, filename="new.bin", size=3)
    long_ago = time.time() - data_assets.UPLOAD_MAX_AGE_S - 60
    folder = data_assets.uploads_dir() / old
    for path in [folder, *folder.iterdir()]:
        os.utime(path, (long_ago, long_ago))
    assert gc.collect(dry_run=True).uploads == [old] and folder.exists()
    assert gc.collect(dry_run=False).uploads == [old]
    assert not folder.exists() and (data_assets.uploads_dir() / fresh).exists()


def test_csv_download_holds_a_bounded_line():
    # One 20 MiB line (no newline) was read whole into memory before csv even looked at it.
    from runs.data_preview import safe_csv_rows

    class Kept(io.BytesIO):
        def close(self):  # the text wrapper closes its file when the generator ends: tell() after it
            pass

    handle = Kept(b"h1,h2\n" + b"x," * (10 * 1024 * 1024))
    rows = safe_csv_rows(handle)
    assert next(rows) == "h1,h2\r\n"
    with pytest.raises(csv.Error):
        next(rows)
    assert handle.tell() <= 17 * 1024 * 1024


def test_csv_download_keeps_quoted_newlines_and_line_ends():
    from runs.data_preview import safe_csv_rows

    source = 'a,b\r\n"multi\nline",=1\r\n"x\ry",2\n'
    assert "".join(safe_csv_rows(io.BytesIO(source.encode()))) == 'a,b\r\n"multi\nline",\'=1\r\n"x\ry",2\r\n'
