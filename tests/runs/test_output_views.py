"""The run page's outputs browser: a step output's file tree with sizes, its preview, one file."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import reverse

from runs import artifacts
from runs.models import StepOutput, StepState
from runs.output_tree import TreeRow, tree_rows
from tests.conftest import make_user
from tests.runs.conftest import set_step

pytestmark = pytest.mark.django_db


@pytest.fixture
def output(run, tmp_path):
    step_run = set_step(run, "prep", state=StepState.SUCCEEDED, attempt=1)
    folder = tmp_path / "out"
    (folder / "tables").mkdir(parents=True)
    (folder / "tables" / "evil.csv").write_text('name,formula\n<script>alert(1)</script>,=HYPERLINK("x")\n')
    (folder / "tables" / "more.txt").write_text("x" * 2048)
    (folder / "readme.txt").write_text("hello <b>world</b>\n")
    return StepOutput.objects.create(
        step_run=step_run, name="data", artifact=artifacts.store_output(folder, "uri_folder")
    )


def page(client: Client, output, **query) -> str:
    url = reverse("step_output_files", args=[output.step_run.run_id, "prep", "data"])
    response = client.get(url, query)
    assert response.status_code == 200
    return response.content.decode()


def test_tree_rows_list_each_folder_once_with_its_total():
    rows, left_out = tree_rows({"b.txt": 1, "a/x.csv": 10, "a/deep/y": 5}, limit=10)
    assert rows == [
        TreeRow(name="a", path="", depth=0, size=15, is_dir=True),
        TreeRow(name="deep", path="", depth=1, size=5, is_dir=True),
        TreeRow(name="y", path="a/deep/y", depth=2, size=5),
        TreeRow(name="x.csv", path="a/x.csv", depth=1, size=10),
        TreeRow(name="b.txt", path="b.txt", depth=0, size=1),
    ]
    assert left_out == 0
    rows, left_out = tree_rows({f"f{i:03}": 1 for i in range(30)}, limit=20)
    assert len(rows) == 20 and left_out == 10


def test_the_page_shows_the_tree_with_sizes_and_previews_a_csv_escaped(alice, output):
    client = Client()
    client.force_login(alice)
    html = page(client, output)
    assert 'class="mr-auto tree-folder">tables/</span>' in html
    assert "2.1\xa0KB" in html  # the folder's total: 2048 bytes and the CSV
    # The first table is previewed, its markup escaped.
    assert "<code>tables/evil.csv</code>" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    html = page(client, output, path="readme.txt")
    assert "hello &lt;b&gt;world&lt;/b&gt;" in html
    # A path the output does not hold reads nothing from the disk: the default file is shown.
    html = page(client, output, path="../../../../../../etc/passwd")
    assert "<code>tables/evil.csv</code>" in html and "root:" not in html


def test_one_file_downloads_with_formulas_neutralised_and_only_files_the_output_holds(alice, output):
    client = Client()
    client.force_login(alice)
    url = reverse("step_output_file", args=[output.step_run.run_id, "prep", "data"])
    response = client.get(url, {"path": "tables/evil.csv"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="evil.csv"'
    assert "'=HYPERLINK" in b"".join(response.streaming_content).decode()
    raw = client.get(url, {"path": "readme.txt"})
    assert b"".join(raw.streaming_content) == b"hello <b>world</b>\n"
    assert raw["X-Content-Type-Options"] == "nosniff"
    first = client.get(url)
    assert first["Content-Disposition"] == 'attachment; filename="readme.txt"'
    for bad in ("../readme.txt", "/etc/passwd", "tables", "tables/../readme.txt", "readme.txt\x00"):
        assert client.get(url, {"path": bad}).status_code == 404, bad


@pytest.mark.parametrize("name", ["données.csv", "模型.csv", "plot-é.png", "模型.txt"])
def test_a_file_named_beyond_ascii_downloads_under_an_rfc_6266_name(alice, run, tmp_path, name):
    # In filename="..." Django would send 'é' as a raw Latin-1 byte and MIME-encode a header holding
    # '模', whole: no browser reads "=?utf-8?b?...?=" as an attachment.
    step_run = set_step(run, "prep", state=StepState.SUCCEEDED, attempt=1)
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / name).write_bytes(b"a,b\n")
    StepOutput.objects.create(step_run=step_run, name="data", artifact=artifacts.store_output(folder, "uri_folder"))
    client = Client()
    client.force_login(alice)
    url = reverse("step_output_file", args=[run.pk, "prep", "data"])
    response = client.get(url, {"path": name, "inline": "1"})
    assert response.status_code == 200
    disposition = response.serialize_headers().decode("ascii").split("Content-Disposition: ")[1].split("\r\n")[0]
    kind = "inline" if name.endswith(".png") else "attachment"
    assert disposition == f"{kind}; filename*=utf-8''{quote(name)}"


def test_the_step_page_links_each_output_to_its_browser(alice, output):
    client = Client()
    client.force_login(alice)
    html = client.get(reverse("run_step", args=[output.step_run.run_id, "prep"])).content.decode()
    assert reverse("step_output_files", args=[output.step_run.run_id, "prep", "data"]) in html


def test_another_teams_user_gets_404(output):
    client = Client()
    client.force_login(make_user("charlie"))
    assert client.get(reverse("step_output_files", args=[output.step_run.run_id, "prep", "data"])).status_code == 404


def test_an_s3_store_gives_sizes_from_its_record_without_downloading(tmp_path, monkeypatch, caplog):
    import logging
    import uuid

    import fsspec
    from moto.server import ThreadedMotoServer

    from runs.store_fsspec import FsspecStore

    caplog.set_level(logging.WARNING, logger="werkzeug")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options = {"endpoint_url": f"http://{host}:{port}", "key": "k", "secret": "s", "skip_instance_cache": True}
        bucket = f"store-{uuid.uuid4().hex[:8]}"
        fsspec.filesystem("s3", **options).mkdir(bucket)
        store = FsspecStore(f"s3://{bucket}/artifacts", options, tmp_path / "cache", 0)
        (tmp_path / "out" / "sub").mkdir(parents=True)
        (tmp_path / "out" / "a.txt").write_bytes(b"abc")
        (tmp_path / "out" / "sub" / "b.bin").write_bytes(b"\0" * 10)
        manifest = store.put(tmp_path / "out", "uri_folder")
        assert store.sizes(manifest.sha256) == {"a.txt": 3, "sub/b.bin": 10}
        assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("a.txt"))
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["stream", "file"])
def test_a_download_under_asgi_is_sent_as_it_is_made(tmp_path, kind):
    from asgiref.sync import async_to_sync

    from runs.downloads import StreamedFileResponse, StreamedResponse

    made = []

    def parts():
        for i in range(1000):
            made.append(i)
            yield b"x" * 1024

    class File:
        def read(self, size):
            made.append(size)
            return b"x" * size if len(made) <= 1000 else b""

    response = StreamedResponse(parts()) if kind == "stream" else StreamedFileResponse(File())

    async def first_part():
        return await response.__aiter__().__anext__()

    # Django's own turns all 1,000 parts into a list first: a big download, all in memory.
    assert len(async_to_sync(first_part)()) > 0
    assert len(made) == 1
    if kind == "file":
        assert made == [1024 * 1024]


def test_an_output_downloads_whole_through_the_asgi_app(alice, output, transactional_db):
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    sync_client, async_client = Client(), AsyncClient()
    sync_client.force_login(alice)
    async_client.force_login(alice)
    folder = reverse("step_output", args=[output.step_run.run_id, "prep", "data"])
    one = reverse("step_output_file", args=[output.step_run.run_id, "prep", "data"])

    async def fetch(url, query):
        response = await async_client.get(url, query)
        return response.status_code, b"".join([part async for part in response])

    for url, query in ((folder, {}), (one, {"path": "tables/more.txt"}), (one, {"path": "tables/evil.csv"})):
        expected = b"".join(sync_client.get(url, query).streaming_content)
        assert async_to_sync(fetch)(url, query) == (200, expected) and expected
