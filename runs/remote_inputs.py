"""Pipeline inputs read from outside Stepwise's files when a run is created.

`path: azureml://datastores/STORE/paths/PATH` reads a file or folder of the team's datastore
STORE; `path: https://...` downloads one file. Either is copied into the content-addressed
artifact store (an S3 store's hosts then keep it in their verified cache, runs/artifact_cache.py)
and recorded as a RunRemoteInput, so the run's steps, its reuse fingerprints and its reruns all
read the bytes seen at creation; a new run reads the source again.

Downloads are fetched before the run's transaction opens (a slow server must not hold the
database's write lock) and at most once per content: a later run sends the ETag or
Last-Modified that the team's last fetch of the same address recorded, and a 304 reuses what is
stored.

Server-side request forgery: the address comes from a pipeline file, so whoever may import a
pipeline could otherwise make the server read its own internal services. Only http(s) is read
(plain http only with STEPWISE_REMOTE_INPUT_ALLOW_HTTP); a host that resolves to a loopback,
private, link-local or otherwise non-public address is refused unless STEPWISE_REMOTE_INPUT_HOSTS
names it; with that setting given, only the hosts it names are read. Every redirect hop is
checked the same way, and so is the address each connection reached, before the request is
sent (a DNS answer that changed since the check, DNS rebinding, gets nothing).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import requests
import requests.adapters
import urllib3
from django.conf import settings
from urllib3.exceptions import ReadTimeoutError

from pipelines_ui.models import Team
from runs import artifacts
from runs.artifact_files import ArtifactError
from runs.data_assets import DataError, datastore_fetch, store_copy
from runs.models import Artifact, Datastore, DataType, Run, RunRemoteInput
from stepwise.spec.bindings import RemoteRef, parse_remote_ref
from stepwise.spec.model import Pipeline

CHUNK = 1024 * 1024
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._\-]+")


class RemoteInputError(ValueError):
    """Why a remote input cannot be read; the message names the address and the cause."""


@dataclass
class Fetched:
    reference: str
    artifact: Artifact
    sha256: str
    size: int
    etag: str = ""
    last_modified: str = ""
    datastore: Datastore | None = None


# -- addresses ----------------------------------------------------------------------------------


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise RemoteInputError(f"cannot resolve host {host!r} (DNS lookup failed)") from None
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


def url_check(url: str) -> None:
    """Raise RemoteInputError unless `url` may be read (scheme, listed hosts, no internal address)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is no number raises here, not later
    except ValueError as exc:  # "Invalid IPv6 URL", a port out of range
        raise RemoteInputError(f"{url[:200]!r} is not a valid address: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise RemoteInputError(f"{url[:200]!r}: only https:// (and http:// where allowed) addresses are read")
    if scheme == "http" and not settings.STEPWISE_REMOTE_INPUT_ALLOW_HTTP:
        raise RemoteInputError(f"{url[:200]!r}: plain http is refused (STEPWISE_REMOTE_INPUT_ALLOW_HTTP): use https")
    if parts.username or parts.password:
        raise RemoteInputError(f"{parts.hostname!r}: credentials in the address are refused")
    host = (parts.hostname or "").lower()
    if not host:
        raise RemoteInputError(f"{url[:200]!r} names no host")
    listed = settings.STEPWISE_REMOTE_INPUT_HOSTS
    if listed:
        if host not in listed:
            raise RemoteInputError(f"host {host!r} is not in STEPWISE_REMOTE_INPUT_HOSTS")
        return
    internal = [a for a in _addresses(host) if _internal(a)]
    if internal:
        raise RemoteInputError(
            f"host {host!r} is an internal address ({internal[0]}): list it in STEPWISE_REMOTE_INPUT_HOSTS to read it"
        )


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not address.is_global or address.is_loopback or address.is_link_local or address.is_private


def _peer_check(sock, host: str) -> None:
    """The address actually connected to, checked again: a DNS answer that changed since
    url_check (DNS rebinding) must not reach an internal service."""
    if settings.STEPWISE_REMOTE_INPUT_HOSTS or sock is None:
        return
    peer = ipaddress.ip_address(sock.getpeername()[0].split("%", 1)[0])
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped
    if _internal(peer):
        sock.close()
        raise RemoteInputError(f"host {host!r} connected to an internal address ({peer}): refused")


# The check sits in _new_conn, which opens the TCP connection: before a TLS handshake or a
# byte of the request reaches the peer.
class _CheckedHTTPConnection(urllib3.connection.HTTPConnection):
    def _new_conn(self):
        sock = super()._new_conn()
        _peer_check(sock, self.host)
        return sock


class _CheckedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def _new_conn(self):
        sock = super()._new_conn()
        _peer_check(sock, self.host)
        return sock


class _CheckedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class _PeerCheckingAdapter(requests.adapters.HTTPAdapter):
    """Connections whose peer address is checked before the request is sent."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _CheckedHTTPPool, "https": _CheckedHTTPSPool}


def _file_name(url: str) -> str:
    last = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    name = _SAFE_NAME.sub("_", last).strip("._")[:200]
    return name or "data"


# -- downloads ------------------------------------------------------------------------------------


def _previous(team: Team, reference: str) -> RunRemoteInput | None:
    return (
        RunRemoteInput.objects.filter(run__pipeline__team=team, reference=reference)
        .exclude(etag="", last_modified="")
        .select_related("artifact")
        .order_by("-pk")
        .first()
    )


def _open(session: requests.Session, url: str, headers: dict[str, str]) -> requests.Response:
    timeout = (settings.STEPWISE_REMOTE_INPUT_CONNECT_TIMEOUT_S, settings.STEPWISE_REMOTE_INPUT_READ_TIMEOUT_S)
    first = url
    for _ in range(settings.STEPWISE_REMOTE_INPUT_MAX_REDIRECTS + 1):
        if url != first:
            try:
                url_check(url)
            except RemoteInputError as exc:
                raise RemoteInputError(f"{first[:200]} redirects to {url[:200]}: {exc}") from None
        try:
            response = session.get(url, headers=headers, stream=True, allow_redirects=False, timeout=timeout)
        except requests.exceptions.Timeout:
            raise RemoteInputError(
                f"{url[:200]}: no answer within the timeout ({timeout[0]} s connect, {timeout[1]} s read)"
            ) from None
        except requests.exceptions.SSLError as exc:
            verify = "certificate verify failed" in str(exc)
            raise RemoteInputError(
                f"{url[:200]}: the server's certificate is not trusted (a private certificate authority"
                " goes in STEPWISE_REMOTE_INPUT_CA_BUNDLE)"
                if verify
                else f"{url[:200]}: the TLS handshake failed"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise RemoteInputError(f"{url[:200]}: cannot connect ({type(exc).__name__})") from None
        except ValueError as exc:
            # requests reads a redirect's Location even when it does not follow it ("http://[::1/x").
            raise RemoteInputError(f"{url[:200]} redirects to no valid address: {exc}") from None
        if not response.is_redirect:
            return response
        # Each hop is checked again: a public address may redirect to an internal one.
        location = response.headers.get("Location", "")
        response.close()
        url = urljoin(url, location)
    raise RemoteInputError(f"{url[:200]}: more than {settings.STEPWISE_REMOTE_INPUT_MAX_REDIRECTS} redirects")


def _save(response: requests.Response, url: str, target: Path) -> tuple[str, int]:
    """Stream the body to `target`: its sha256 and size, checked against the size limit and the headers."""
    limit = settings.STEPWISE_REMOTE_INPUT_MAX_BYTES
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RemoteInputError(f"{url[:200]}: {declared} bytes is more than STEPWISE_REMOTE_INPUT_MAX_BYTES ({limit})")
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    try:
        with target.open("wb") as out:
            for chunk in response.iter_content(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise RemoteInputError(f"{url[:200]}: more than STEPWISE_REMOTE_INPUT_MAX_BYTES ({limit}) bytes")
                sha.update(chunk)
                md5.update(chunk)
                out.write(chunk)
    except requests.exceptions.RequestException as exc:
        # requests reports a read timeout while streaming as a ConnectionError wrapping urllib3's.
        if isinstance(exc, requests.exceptions.Timeout) or any(isinstance(a, ReadTimeoutError) for a in exc.args):
            read_s = settings.STEPWISE_REMOTE_INPUT_READ_TIMEOUT_S
            raise RemoteInputError(f"{url[:200]}: no answer within the timeout ({read_s} s read)") from None
        raise RemoteInputError(f"{url[:200]}: the download broke off ({type(exc).__name__})") from None
    # Content-Length is not checked by requests on a streamed body with identity encoding.
    if declared.isdigit() and not response.headers.get("Content-Encoding") and int(declared) != size:
        raise RemoteInputError(f"{url[:200]}: got {size} bytes of the {declared} announced (truncated)")
    if (given := response.headers.get("Content-MD5")) and given != base64.b64encode(md5.digest()).decode():
        raise RemoteInputError(f"{url[:200]}: the content does not match its Content-MD5 checksum")
    return sha.hexdigest(), size


def url_fetch(*, team: Team, url: str, type_: str) -> Fetched:
    """Download `url` (a file) into the artifact store, or reuse what a 304 says is unchanged."""
    if type_ != DataType.URI_FILE:
        raise RemoteInputError(f"{url[:200]}: a web address is a file: declare the input as uri_file")
    url_check(url)
    previous = _previous(team, url)
    headers = {"Accept-Encoding": "identity"}
    if previous is not None and artifacts.artifact_intact(previous.artifact):
        if previous.etag:
            headers["If-None-Match"] = previous.etag
        if previous.last_modified:
            headers["If-Modified-Since"] = previous.last_modified
    else:
        previous = None
    with requests.Session() as session:
        # No proxies or .netrc credentials from the server's environment reach an address a pipeline names.
        session.trust_env = False
        session.verify = settings.STEPWISE_REMOTE_INPUT_CA_BUNDLE or True
        adapter = _PeerCheckingAdapter(max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        response = _open(session, url, headers)
        with response:
            if response.status_code == 304 and previous is not None:
                p = previous
                return Fetched(url, p.artifact, p.sha256, p.size, p.etag, p.last_modified)
            if response.status_code == 404:
                raise RemoteInputError(f"{url[:200]}: not found (HTTP 404)")
            if response.status_code != 200:
                raise RemoteInputError(f"{url[:200]}: HTTP {response.status_code} {response.reason or ''}".rstrip())
            downloads = Path(settings.STEPWISE_WORKDIR) / "downloads"
            downloads.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="remote-", dir=downloads) as tmp:
                target = Path(tmp) / _file_name(url)
                sha256, size = _save(response, url, target)
                try:
                    artifact = artifacts.register(artifacts.store_files(target, DataType.URI_FILE), DataType.URI_FILE)
                except ArtifactError as exc:
                    raise RemoteInputError(f"{url[:200]}: cannot store the download: {exc}") from None
            return Fetched(
                url,
                artifact,
                sha256,
                size,
                response.headers.get("ETag", "")[:200],
                response.headers.get("Last-Modified", "")[:100],
            )


def datastore_path_fetch(*, team: Team, reference: str, ref: RemoteRef, type_: str) -> Fetched:
    """Copy a file or folder of the team's datastore into the artifact store."""
    datastore = Datastore.objects.filter(team=team, name=ref.store).first()
    if datastore is None:
        raise RemoteInputError(f"team {team.name} has no datastore named {ref.store!r}")
    try:
        with tempfile.TemporaryDirectory(prefix="stepwise-ds-") as tmp:
            local = datastore_fetch(datastore, ref.path, Path(tmp))
            artifact = store_copy(local, type_)
            if type_ == DataType.URI_FILE:
                with local.open("rb") as f:
                    sha256 = hashlib.file_digest(f, "sha256").hexdigest()
            else:
                sha256 = artifact.sha256
    except DataError as exc:
        raise RemoteInputError(str(exc)) from None
    return Fetched(reference, artifact, sha256, artifact.size, datastore=datastore)


def remote_fetch(*, team: Team, reference: str, type_: str) -> Fetched:
    ref = parse_remote_ref(reference)
    if ref is None:
        raise RemoteInputError(
            f"'{reference[:200]}' is not azureml://datastores/STORE/paths/PATH or an https:// address"
        )
    if ref.url:
        return url_fetch(team=team, url=ref.url, type_=type_)
    return datastore_path_fetch(team=team, reference=reference, ref=ref, type_=type_)


# -- runs -------------------------------------------------------------------------------------------


def remote_inputs_fetch(
    *, team: Team, spec: Pipeline, refs: dict[str, str] | None = None, pinned: dict[str, Fetched] | None = None
) -> tuple[dict[str, Fetched], dict[str, str]]:
    """The run's remote inputs read now (or `pinned`, a rerun's), and errors by input name.

    `refs` replaces an input's reference for this run (a data trigger binding a datastore path)."""
    fetched: dict[str, Fetched] = {}
    errors: dict[str, str] = {}
    for name, decl in spec.inputs.items():
        reference = (refs or {}).get(name, decl.asset)
        if reference is None or parse_remote_ref(reference) is None:
            continue
        if pinned and name in pinned:
            fetched[name] = pinned[name]
            continue
        try:
            fetched[name] = remote_fetch(team=team, reference=reference, type_=decl.type)
        except RemoteInputError as exc:
            errors[name] = str(exc)
    return fetched, errors


def remote_inputs_record(*, run: Run, fetched: dict[str, Fetched]) -> None:
    RunRemoteInput.objects.bulk_create(
        RunRemoteInput(
            run=run,
            name=name,
            reference=f.reference[:2000],
            artifact=f.artifact,
            sha256=f.sha256,
            size=f.size,
            etag=f.etag,
            last_modified=f.last_modified,
            datastore=f.datastore,
        )
        for name, f in fetched.items()
    )


def run_remote_pins(run: Run) -> dict[str, Fetched]:
    """What the run read, for its rerun: the same stored bytes, nothing fetched again."""
    return {
        row.name: Fetched(row.reference, row.artifact, row.sha256, row.size, row.etag, row.last_modified, row.datastore)
        for row in RunRemoteInput.objects.filter(run=run).select_related("artifact", "datastore")
    }
