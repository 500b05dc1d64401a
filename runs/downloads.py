"""A step output as a download: the file itself, or its folder zipped on the fly (pages and the API)."""

from __future__ import annotations

import itertools
import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath

from asgiref.sync import sync_to_async
from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

from runs import artifacts, data_preview
from runs.models import Artifact, StepRun


def safe_filename(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:100] or "download"


def disposition(filename: str, *, inline: bool = False) -> str:
    """The Content-Disposition of a download named `filename` (from safe_filename), RFC 6266: a name
    with letters beyond ASCII goes as filename*=utf-8''..., since in plain filename="..." Django would
    send Latin-1 bytes or MIME-encode the whole header, which browsers do not read as an attachment."""
    return content_disposition_header(not inline, filename) or "attachment"


_END = object()


class _SentAsMade:
    """Under ASGI (daphne serves the app), Django makes a list of a synchronous iterator's parts
    before it sends the first (StreamingHttpResponse.__aiter__): a 10 GB download held 10 GB of
    the web server's memory. Here each part is made as it is sent, in the request's sync thread
    (a log's rows are read on its database connection)."""

    async def __aiter__(self):
        parts = iter(self.streaming_content)
        take = sync_to_async(next)
        while (part := await take(parts, _END)) is not _END:
            yield part


class StreamedResponse(_SentAsMade, StreamingHttpResponse):
    """Its first part is made here, in the view, before the status goes out: a query or a file
    that fails at the start (the database refusing it, an artifact gone) is the view's error
    answer, not a 200 whose body ends short. A failure past it can only end the body early."""

    def _set_streaming_content(self, value) -> None:
        parts = iter(value)
        first = next(parts, _END)
        super()._set_streaming_content(parts if first is _END else itertools.chain([first], parts))


class StreamedFileResponse(_SentAsMade, FileResponse):
    # Each part is a hop to the sync thread and back: read in MiB, not in Django's 4 KiB.
    block_size = 1024 * 1024


class _ZipSink:
    """A write-only, unseekable file for zipfile, drained between writes (zipfile then uses data descriptors)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


# A backslash is a legal file name character on Linux, so a step may write `a\b.txt`; Windows'
# own extractor (and others) read it as a folder separator and would make a folder `a`. Control
# characters (a newline, an escape sequence) are legal too: Windows refuses them in a name, and
# `unzip -l` prints them raw to the terminal.
_UNSAFE_IN_ARCHIVE = {ord("\\"): "_"} | {c: "_" for c in (*range(0x20), *range(0x7F, 0xA0))}


def archive_names(files: list[str]) -> dict[str, str]:
    """Each stored path's member name in a zip: characters that an extractor would read as path
    structure, or a terminal as a command, replaced by '_', and a name so changed that meets
    another made unique with ' (2)'."""
    names = {rel: rel.translate(_UNSAFE_IN_ARCHIVE) for rel in files}
    kept = [rel for rel in files if names[rel] == rel]
    taken = set(kept) | {str(parent) for rel in kept for parent in PurePosixPath(rel).parents}
    for rel in files:
        if names[rel] == rel:
            continue
        path = PurePosixPath(names[rel])
        name, n = names[rel], 1
        while name in taken:
            n += 1
            name = str(path.with_name(f"{path.stem} ({n}){path.suffix}"))
        names[rel] = name
        taken.add(name)
        taken.update(str(parent) for parent in PurePosixPath(name).parents)
    return names


def zip_stream(artifact: Artifact, files: list[str]) -> Iterator[bytes]:
    """The artifact's files zipped on the fly, read straight from the store (local or remote)."""
    sink = _ZipSink()
    names = archive_names(files)
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for rel in files:
            source = artifacts.open_stored_file(artifact, rel)
            with source, archive.open(names[rel], "w", force_zip64=True) as target:
                while chunk := source.read(1024 * 1024):
                    target.write(chunk)
                    yield sink.drain()
            yield sink.drain()
    yield sink.drain()


def stored_file_response(artifact: Artifact, rel: str, *, raw: bool = False, inline: bool = False) -> HttpResponse:
    """One file of an artifact, `rel` being one of its stored files (the caller checks): raster images
    inline when asked, CSV with formula-looking cells neutralised unless `raw`, else an attachment."""
    name = safe_filename(rel.rpartition("/")[2])
    suffix = PurePosixPath(rel).suffix.lower()
    try:
        handle = artifacts.open_stored_file(artifact, rel)
    except (OSError, artifacts.ArtifactError):
        raise Http404("The file is missing from the store") from None
    if suffix in (".csv", ".tsv") and not raw:
        delimiter = "\t" if suffix == ".tsv" else ","
        response: HttpResponse = StreamedResponse(
            data_preview.safe_csv_rows(handle, delimiter=delimiter), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = disposition(name)
    elif suffix in data_preview.IMAGE_TYPES and inline:
        response = StreamedFileResponse(handle, content_type=data_preview.IMAGE_TYPES[suffix])
        response["Content-Disposition"] = disposition(name, inline=True)
    else:
        response = StreamedFileResponse(
            handle, as_attachment=True, filename=name, content_type="application/octet-stream"
        )
    response["X-Content-Type-Options"] = "nosniff"
    return response


def output_response(run, step_run: StepRun, output_name: str) -> HttpResponse:
    # The output is looked up by name in the database; the path comes only from its artifact's hash.
    output = step_run.outputs.select_related("artifact").filter(name=output_name).first()
    if output is None:
        raise Http404("No such output")
    artifact = output.artifact
    try:
        files = artifacts.stored_files(artifact)
        if artifact.kind == Artifact.Kind.FILE:
            if not files:
                raise Http404("The output's file is missing from the artifact store")
            name = files[0].rpartition("/")[2]
            # Never the type its name suggests: a step's .js or .css, served from our origin as such, is a
            # script or stylesheet that a page could load past the CSP's 'self', attachment or not.
            response = StreamedFileResponse(
                artifacts.open_stored_file(artifact, files[0]),
                as_attachment=True,
                filename=name,
                content_type="application/octet-stream",
            )
            response["X-Content-Type-Options"] = "nosniff"
            return response
    except (OSError, artifacts.ArtifactError):
        raise Http404("The output is missing from the artifact store") from None
    response = StreamedResponse(zip_stream(artifact, files), content_type="application/zip")
    filename = f"run-{run.pk}-{safe_filename(step_run.name)}-{safe_filename(output.name)}.zip"
    response["Content-Disposition"] = disposition(filename)
    return response
