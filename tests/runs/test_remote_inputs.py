"""Inputs read when a run is created: `azureml://datastores/...` paths and web addresses, served
here by a local HTTP server in a thread (http to 127.0.0.1 allowed through the settings)."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
import trustme

from runs import artifacts, data_assets, remote_inputs
from runs.gc import collect
from runs.models import RunRemoteInput, StepState
from runs.remote_inputs import RemoteInputError, url_check
from runs.services import RunInputError, run_create, run_rerun
from runs.specs import version_spec
from stepwise.spec import load_pipeline, parse_text, to_json
from stepwise.spec.serialize import dump_folder
from tests.runs.conftest import make_pipeline, set_step

pytestmark = pytest.mark.django_db

READER = """
type: pipeline
inputs:
  raw: {{type: {type}, path: "{ref}"}}
jobs:
  read:
    command: ls ${{{{inputs.d}}}}
    inputs: {{d: "${{{{parent.inputs.raw}}}}"}}
"""


class Site:
    """What the server serves: path -> body, an ETag per body, and a count of the GETs per path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: Counter[str] = Counter()
        self.release = threading.Event()


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            site.hits[path] += 1
            if path == "/redirect":
                self._head(302, Location="/data.csv")
            elif path == "/loop":
                self._head(302, Location="/loop")
            elif path == "/bad-location":
                self._head(302, Location="http://[::1/x")
            elif path == "/to-metadata":
                self._head(302, Location="http://169.254.169.254/latest/meta-data/")
            elif path == "/huge":
                self._head(200, **{"Content-Length": str(10**12)})
            elif path == "/endless":
                # No Content-Length: the limit is enforced while reading.
                self._head(200, Connection="close")
                for _ in range(64):
                    self.wfile.write(b"x" * 1024)
            elif path == "/truncated":
                self._head(200, **{"Content-Length": "100", "Connection": "close"})
                self.wfile.write(b"only a part")
            elif path == "/slow":
                self._head(200, **{"Content-Length": "10"})
                site.release.wait(10)
            elif path == "/bad-md5":
                self._head(200, **{"Content-Length": "3", "Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="})
                self.wfile.write(b"abc")
            elif path in site.files:
                body = site.files[path]
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    self._head(304, ETag=etag)
                    return
                self._head(200, ETag=etag, **{"Content-Length": str(len(body))})
                self.wfile.write(body)
            else:
                self._head(404, **{"Content-Length": "0"})

        def _head(self, status: int, **headers: str) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()

    return Handler


def serve(settings, *, tls: trustme.CA | None = None) -> Iterator[Site]:
    """A local HTTP server in a thread, with http to 127.0.0.1 allowed; for fixtures to yield from.
    With `tls`, an https server whose certificate that authority signed, and http refused."""
    settings.STEPWISE_REMOTE_INPUT_ALLOW_HTTP = tls is None
    settings.STEPWISE_REMOTE_INPUT_HOSTS = ["127.0.0.1"]
    settings.STEPWISE_REMOTE_INPUT_READ_TIMEOUT_S = 1
    served = Site()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    server.daemon_threads = True
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.issue_cert("127.0.0.1").configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "http" if tls is None else "https"
    served.base = f"{scheme}://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield served
    served.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def site(settings):
    yield from serve(settings)


def reader(team, alice, ref: str, type_: str = "uri_file", name: str = "reader"):
    return make_pipeline(team, alice, name=name, yaml_text=READER.format(ref=ref, type=type_))


# ---- web addresses ------------------------------------------------------------------------------


def test_a_web_file_is_downloaded_hashed_and_recorded(team, alice, site):
    site.files["/data.csv"] = b"a,b\n1,2\n"
    pipeline = reader(team, alice, f"{site.base}/data.csv")
    run = run_create(version=pipeline.latest_version, user=alice)
    row = RunRemoteInput.objects.get(run=run, name="raw")
    assert row.sha256 == hashlib.sha256(b"a,b\n1,2\n").hexdigest() and row.size == 8
    assert row.etag.startswith('"') and row.reference == f"{site.base}/data.csv"
    assert artifacts.stored_files(row.artifact) == ["data.csv"]
    assert data_assets.run_data_artifacts(run) == {"raw": row.artifact}
    assert to_json(version_spec(pipeline.latest_version))["inputs"]["raw"]["asset"] == f"{site.base}/data.csv"


@pytest.fixture
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_site(settings, authority):
    yield from serve(settings, tls=authority)


def test_an_https_file_is_downloaded_from_a_server_of_a_trusted_private_authority(
    team, alice, tls_site, authority, settings, tmp_path
):
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    settings.STEPWISE_REMOTE_INPUT_CA_BUNDLE = str(bundle)
    tls_site.files["/data.csv"] = b"x,y\n3,4\n"
    pipeline = reader(team, alice, f"{tls_site.base}/data.csv")
    run = run_create(version=pipeline.latest_version, user=alice)
    row = RunRemoteInput.objects.get(run=run, name="raw")
    assert row.reference.startswith("https://")
    assert row.sha256 == hashlib.sha256(b"x,y\n3,4\n").hexdigest()
    assert artifacts.stored_files(row.artifact) == ["data.csv"]


def test_an_https_server_of_an_untrusted_authority_is_refused_saying_where_its_authority_goes(
    team, alice, tls_site, settings
):
    settings.STEPWISE_REMOTE_INPUT_CA_BUNDLE = ""  # the public authorities only
    tls_site.files["/data.csv"] = b"secret"
    pipeline = reader(team, alice, f"{tls_site.base}/data.csv")
    with pytest.raises(RunInputError, match="certificate is not trusted.*STEPWISE_REMOTE_INPUT_CA_BUNDLE"):
        run_create(version=pipeline.latest_version, user=alice)
    assert not pipeline.runs.exists()
    assert tls_site.hits["/data.csv"] == 0  # nothing was asked of a server it could not trust


def test_an_unchanged_file_is_downloaded_once_and_a_changed_one_again(team, alice, site):
    site.files["/data.csv"] = b"one"
    pipeline = reader(team, alice, f"{site.base}/data.csv")
    first = run_create(version=pipeline.latest_version, user=alice)
    second = run_create(version=pipeline.latest_version, user=alice)
    a, b = (RunRemoteInput.objects.get(run=r) for r in (first, second))
    # The second run asked with the ETag and got a 304: the same stored bytes, no second body.
    assert a.artifact == b.artifact and a.sha256 == b.sha256
    assert site.hits["/data.csv"] == 2
    site.files["/data.csv"] = b"two"
    third = run_create(version=pipeline.latest_version, user=alice)
    c = RunRemoteInput.objects.get(run=third)
    assert c.sha256 == hashlib.sha256(b"two").hexdigest() and c.artifact != a.artifact


def test_a_rerun_reads_what_its_run_read_and_a_new_run_reads_again(team, alice, site):
    site.files["/data.csv"] = b"one"
    pipeline = reader(team, alice, f"{site.base}/data.csv")
    run = run_create(version=pipeline.latest_version, user=alice)
    set_step(run, "read", state=StepState.SUCCEEDED)
    run.state = "succeeded"
    run.save(update_fields=["state"])
    site.files["/data.csv"] = b"changed"
    hits = site.hits["/data.csv"]
    rerun = run_rerun(run=run, user=alice)
    assert site.hits["/data.csv"] == hits
    assert RunRemoteInput.objects.get(run=rerun).sha256 == hashlib.sha256(b"one").hexdigest()
    fresh = run_create(version=pipeline.latest_version, user=alice)
    assert RunRemoteInput.objects.get(run=fresh).sha256 == hashlib.sha256(b"changed").hexdigest()


def test_redirects_are_followed_a_bounded_number_of_times(team, alice, site, settings):
    site.files["/data.csv"] = b"x"
    pipeline = reader(team, alice, f"{site.base}/redirect")
    run = run_create(version=pipeline.latest_version, user=alice)
    assert RunRemoteInput.objects.get(run=run).sha256 == hashlib.sha256(b"x").hexdigest()
    settings.STEPWISE_REMOTE_INPUT_MAX_REDIRECTS = 3
    loop = reader(team, alice, f"{site.base}/loop", name="loop")
    with pytest.raises(RunInputError, match="more than 3 redirects"):
        run_create(version=loop.latest_version, user=alice)
    assert site.hits["/loop"] == 4


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing.csv", "not found (HTTP 404)"),
        ("/huge", "more than STEPWISE_REMOTE_INPUT_MAX_BYTES"),
        ("/endless", "more than STEPWISE_REMOTE_INPUT_MAX_BYTES"),
        ("/truncated", "truncated"),
        ("/slow", "no answer within the timeout"),
        ("/bad-md5", "Content-MD5"),
        ("/to-metadata", "'169.254.169.254' is not in STEPWISE_REMOTE_INPUT_HOSTS"),
        ("/bad-location", "redirects to no valid address: Invalid IPv6 URL"),
    ],
)
def test_a_download_that_fails_names_the_input_and_the_cause(team, alice, site, settings, path, message):
    settings.STEPWISE_REMOTE_INPUT_MAX_BYTES = 32 * 1024
    pipeline = reader(team, alice, f"{site.base}{path}")
    with pytest.raises(RunInputError) as refused:
        run_create(version=pipeline.latest_version, user=alice)
    assert message in refused.value.errors["raw"] and path in refused.value.errors["raw"]
    assert not pipeline.runs.exists()


def test_an_azure_blob_is_downloaded_from_its_https_address(team, alice):
    """Azure's blob service is out of reach here: what is asked of it is checked, not its answer."""
    pipeline = reader(team, alice, "wasbs://datasets@azuremlexamples.blob.core.windows.net/iris.csv")
    asked = []

    def url_fetch(*, team, url, type_):
        asked.append((url, type_))
        raise RemoteInputError("answered 404")

    with mock.patch.object(remote_inputs, "url_fetch", url_fetch), pytest.raises(RunInputError) as refused:
        run_create(version=pipeline.latest_version, user=alice)
    assert asked == [("https://azuremlexamples.blob.core.windows.net/datasets/iris.csv", "uri_file")]
    assert "answered 404" in refused.value.errors["raw"]


def test_plain_http_is_refused_unless_allowed(team, alice, site, settings):
    settings.STEPWISE_REMOTE_INPUT_ALLOW_HTTP = False
    pipeline = reader(team, alice, f"{site.base}/data.csv")
    with pytest.raises(RunInputError, match="plain http is refused"):
        run_create(version=pipeline.latest_version, user=alice)
    assert site.hits["/data.csv"] == 0


def _resolves_to(address: str):
    return mock.patch.object(
        remote_inputs.socket, "getaddrinfo", return_value=[(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0))]
    )


@pytest.mark.parametrize(
    ("url", "address", "refused"),
    [
        ("https://data.example.org/x.csv", "93.184.216.34", None),
        ("https://internal.example.org/x", "10.1.2.3", "internal address"),
        ("https://metadata.example.org/x", "169.254.169.254", "internal address"),
        ("https://127.0.0.1/x", None, "internal address"),
        ("https://[::1]/x", None, "internal address"),
        ("https://localhost/x", "127.0.0.1", "internal address"),
        ("ftp://data.example.org/x", None, "only https://"),
        ("file:///etc/passwd", None, "only https://"),
        ("https://user:pw@data.example.org/x", "93.184.216.34", "credentials"),
        # urlsplit's own ValueErrors: every run of the pipeline was a 500.
        ("https://[::1/x.csv", None, "is not a valid address"),
        ("https://data.example.org:99999/x", None, "is not a valid address"),
    ],
)
def test_only_public_hosts_are_read_by_default(settings, url, address, refused):
    settings.STEPWISE_REMOTE_INPUT_HOSTS = []
    with _resolves_to(address or "93.184.216.34"):
        if refused is None:
            url_check(url)
        else:
            with pytest.raises(RemoteInputError, match=refused):
                url_check(url)


def test_listed_hosts_are_the_only_ones_read(settings):
    settings.STEPWISE_REMOTE_INPUT_HOSTS = ["data.example.org"]
    with _resolves_to("10.0.0.5"):
        url_check("https://data.example.org/x")
    with pytest.raises(RemoteInputError, match="not in STEPWISE_REMOTE_INPUT_HOSTS"):
        url_check("https://other.example.org/x")


def test_a_host_that_does_not_resolve_is_named(settings):
    settings.STEPWISE_REMOTE_INPUT_HOSTS = []
    with mock.patch.object(remote_inputs.socket, "getaddrinfo", side_effect=socket.gaierror("no such host")):
        with pytest.raises(RemoteInputError, match="cannot resolve host 'nope.example.org'"):
            url_check("https://nope.example.org/x")


def test_gc_keeps_what_runs_downloaded(team, alice, site, settings):
    site.files["/data.csv"] = b"keep me"
    pipeline = reader(team, alice, f"{site.base}/data.csv")
    run = run_create(version=pipeline.latest_version, user=alice)
    row = RunRemoteInput.objects.get(run=run)
    with mock.patch("runs.gc.GRACE", timedelta(0)):
        report = collect(dry_run=False)
    assert row.artifact.sha256 not in report.artifacts
    assert artifacts.artifact_intact(row.artifact, verify_content=True)


# ---- datastore paths ----------------------------------------------------------------------------


@pytest.fixture
def lake(team, tmp_path, settings):
    settings.STEPWISE_DATASTORE_ROOTS = [tmp_path]
    root = tmp_path / "store"
    (root / "raw").mkdir(parents=True)
    (root / "raw" / "a.csv").write_text("1")
    (root / "raw" / "b.csv").write_text("2")
    return data_assets.datastore_create(team=team, name="lake", kind="local", root=str(root))


@pytest.mark.parametrize(
    ("ref", "type_", "files"),
    [
        ("azureml://datastores/lake/paths/raw", "uri_folder", ["a.csv", "b.csv"]),
        ("azureml://datastores/lake/paths/raw/a.csv", "uri_file", ["a.csv"]),
        (
            "azureml://subscriptions/s/resourcegroups/rg/workspaces/ws/datastores/lake/paths/raw/",
            "uri_folder",
            ["a.csv", "b.csv"],
        ),
    ],
)
def test_a_datastore_path_is_copied_and_recorded(team, alice, lake, ref, type_, files):
    pipeline = reader(team, alice, ref, type_)
    run = run_create(version=pipeline.latest_version, user=alice)
    row = RunRemoteInput.objects.get(run=run, name="raw")
    assert sorted(artifacts.stored_files(row.artifact)) == files and row.datastore == lake
    if type_ == "uri_file":
        assert row.sha256 == hashlib.sha256(b"1").hexdigest()


def test_a_datastore_path_given_to_a_job_is_read_when_the_run_is_created(team, alice, lake):
    """As Azure ML's samples write it: the path under the job's input, not the pipeline's."""
    text = """
type: pipeline
jobs:
  read:
    command: ls ${{inputs.d}}
    inputs:
      d: {type: uri_folder, path: "azureml://datastores/lake/paths/raw", mode: ro_mount}
"""
    pipeline = make_pipeline(team, alice, name="job-reader", yaml_text=text)
    run = run_create(version=pipeline.latest_version, user=alice)
    row = RunRemoteInput.objects.get(run=run, name="read_d")
    assert sorted(artifacts.stored_files(row.artifact)) == ["a.csv", "b.csv"] and row.datastore == lake


def test_a_changed_datastore_path_is_read_again_by_a_new_run_only(team, alice, lake, tmp_path):
    pipeline = reader(team, alice, "azureml://datastores/lake/paths/raw", "uri_folder")
    first = run_create(version=pipeline.latest_version, user=alice)
    (tmp_path / "store" / "raw" / "a.csv").write_text("changed")
    set_step(first, "read", state=StepState.SUCCEEDED)
    first.state = "succeeded"
    first.save(update_fields=["state"])
    rerun = run_rerun(run=first, user=alice)
    fresh = run_create(version=pipeline.latest_version, user=alice)
    artifact_of = {r.run_id: r.artifact_id for r in RunRemoteInput.objects.all()}
    assert artifact_of[rerun.pk] == artifact_of[first.pk] != artifact_of[fresh.pk]


@pytest.mark.parametrize(
    ("ref", "type_", "message"),
    [
        ("azureml://datastores/nope/paths/raw", "uri_folder", "no datastore named 'nope'"),
        ("azureml://datastores/lake/paths/missing", "uri_folder", "does not exist"),
        ("azureml://datastores/lake/paths/../../etc", "uri_folder", "leaves the datastore"),
        ("azureml://datastores/lake/paths/raw", "uri_file", "is not a file"),
    ],
)
def test_a_bad_datastore_path_is_refused_by_name(team, alice, lake, ref, type_, message):
    pipeline = reader(team, alice, ref, type_)
    with pytest.raises(RunInputError) as refused:
        run_create(version=pipeline.latest_version, user=alice)
    assert message in refused.value.errors["raw"]
    assert not pipeline.runs.exists()


def test_another_teams_datastore_is_not_found(other_team, charlie, lake):
    pipeline = reader(other_team, charlie, "azureml://datastores/lake/paths/raw", "uri_folder")
    with pytest.raises(RunInputError, match="has no datastore named 'lake'"):
        run_create(version=pipeline.latest_version, user=charlie)


def test_nothing_is_fetched_when_other_inputs_are_wrong(team, alice, site):
    site.files["/data.csv"] = b"x"
    pipeline = reader(team, alice, f"{site.base}/data.csv")
    with pytest.raises(RunInputError, match="no such input"):
        run_create(version=pipeline.latest_version, user=alice, inputs={"nope": 1})
    assert site.hits["/data.csv"] == 0


def test_the_run_page_shows_what_was_read_escaped(client, team, alice, site):
    site.files["/a%3Cb%3E.csv"] = b"x"  # requests quotes the path
    pipeline = reader(team, alice, f"{site.base}/a<b>.csv")
    run = run_create(version=pipeline.latest_version, user=alice)
    client.force_login(alice)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert 'id="run-remote-inputs"' in page and hashlib.sha256(b"x").hexdigest()[:12] in page
    assert "a&lt;b&gt;.csv" in page and "a<b>.csv" not in page


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_name_that_resolves_elsewhere_when_connecting_is_refused(team, alice, site, settings, scheme):
    """DNS rebinding: the check saw a public address, the connection reached the loopback one;
    refused before a TLS handshake or a byte of the request."""
    settings.STEPWISE_REMOTE_INPUT_HOSTS = []
    site.files["/data.csv"] = b"secret of an internal service"
    pipeline = reader(team, alice, f"{site.base.replace('http:', scheme + ':')}/data.csv")
    public = [remote_inputs.ipaddress.ip_address("93.184.216.34")]
    with mock.patch.object(remote_inputs, "_addresses", return_value=public):
        with pytest.raises(RunInputError, match=r"connected to an internal address \(127\.0\.0\.1\)"):
            run_create(version=pipeline.latest_version, user=alice)
    assert site.hits["/data.csv"] == 0
    assert not RunRemoteInput.objects.exists()


def test_the_run_form_names_the_address_and_a_failed_download(client, team, alice, site):
    pipeline = reader(team, alice, f"{site.base}/missing.csv")
    client.force_login(alice)
    url = f"/pipelines/{pipeline.pk}/run/"
    assert f"reads {site.base}/missing.csv when the run starts" in client.get(url).content.decode()
    page = client.post(url, {"timeout_s": ""}).content.decode()
    assert "raw: " in page and "not found (HTTP 404)" in page
    assert not pipeline.runs.exists()


@pytest.mark.parametrize(
    ("ref", "type_"),
    [("azureml://datastores/lake/paths/raw/x.csv", "uri_file"), ("https://data.example.org/a%20b.csv", "uri_file")],
)
def test_export_writes_the_address_back_and_it_loads_again(tmp_path, ref, type_):
    spec, _ = parse_text(READER.format(ref=ref, type=type_))
    dump_folder(spec, tmp_path / "out")
    assert f"path: {ref}" in (tmp_path / "out" / "pipeline.yml").read_text()
    again, _ = load_pipeline(tmp_path / "out" / "pipeline.yml")
    assert again.inputs["raw"].asset == ref


def test_a_ca_bundle_setting_naming_no_file_stops_the_server_from_starting(tmp_path):
    env = {**os.environ, "STEPWISE_REMOTE_INPUT_CA_BUNDLE": str(tmp_path / "missing.pem")}
    done = subprocess.run(
        [sys.executable, "-c", "import pipelines_ui.settings"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "ImproperlyConfigured: STEPWISE_REMOTE_INPUT_CA_BUNDLE: no such file" in done.stderr
