"""Untrusted uploads: zip archives extracted safely, single YAML files written safely.

A zip from a browser may hold `../` paths (zip slip), absolute paths, symlinks, or a
few kilobytes that inflate to gigabytes; each is refused before anything is written
outside the temporary directory, and sizes are checked while inflating, since the
sizes a zip declares may lie.
"""

from __future__ import annotations

import stat
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path, PurePosixPath

from django.conf import settings

from stepwise.spec.bindings import text_problem
from stepwise.spec.model import Problem

DEFAULT_MAX_FILES = 2000
_CHUNK = 64 * 1024
YAML_SUFFIXES = (".yml", ".yaml")
# Folders that zip tools add and nobody means to upload.
_IGNORED_PARTS = {"__MACOSX", ".DS_Store"}


class UploadError(ValueError):
    pass


def max_bytes() -> int:
    return int(settings.STEPWISE_UPLOAD_MAX_BYTES)


def max_files() -> int:
    return int(getattr(settings, "STEPWISE_UPLOAD_MAX_FILES", DEFAULT_MAX_FILES))


def _safe_relpath(name: str) -> PurePosixPath | None:
    """The member's path relative to the destination, or None for a directory entry."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UploadError(f"{name!r}: absolute paths are not allowed in the zip")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UploadError(f"{name!r}: '..' is not allowed in zip paths")
    if not parts:
        return None
    return PurePosixPath(*parts)


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return stat.S_ISLNK(mode)


NAME_MAX_BYTES = 255  # a file name's limit on Linux file systems, in bytes of UTF-8


def fit_filename(raw: str, default: str) -> str:
    """A browser's file name as a file can be named here: its last part, `default` for a name
    that is empty, a dot name or holds NUL, shortened (its suffix kept) to NAME_MAX_BYTES."""
    name = Path(str(raw)[-4 * NAME_MAX_BYTES :].replace("\\", "/")).name.strip()
    if not name or name in (".", "..") or text_problem(name):
        return default
    if len(name.encode()) <= NAME_MAX_BYTES:
        return name
    suffix = Path(name).suffix if len(Path(name).suffix.encode()) <= 32 else ""
    room = NAME_MAX_BYTES - len(suffix.encode())
    # Cut by bytes, and drop a character the cut split in two.
    stem = name[: len(name) - len(suffix)].encode()[:room].decode("utf-8", "ignore")
    return stem + suffix


def extract_zip(source, dest: Path, *, limit_bytes: int | None = None, limit_files: int | None = None) -> list[Path]:
    """Extract the zip `source` (a path or a binary file object) into `dest`.

    Returns the extracted files (relative to `dest`). Raises UploadError, having written
    nothing outside `dest`, for unsafe paths, symlinks, too many files or too many bytes.
    """
    limit_bytes = max_bytes() if limit_bytes is None else limit_bytes
    limit_files = max_files() if limit_files is None else limit_files
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, ValueError) as exc:  # ValueError: a member name flagged UTF-8 that is not
        raise UploadError(f"not a valid zip file ({exc})") from None
    except OSError as exc:
        # strerror, not str(exc): that would name the server's temporary file.
        raise UploadError(f"not a valid zip file ({exc.strerror or 'unreadable'})") from None
    with archive:
        members: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        declared = 0
        # Check every member before writing any, so a bad archive leaves nothing behind.
        for info in archive.infolist():
            rel = _safe_relpath(info.filename)
            if rel is None or info.is_dir():
                continue
            if _is_symlink(info):
                raise UploadError(f"{info.filename!r}: symbolic links are not allowed in the zip")
            if any(part in _IGNORED_PARTS for part in rel.parts):
                continue
            if any(len(part.encode()) > NAME_MAX_BYTES for part in rel.parts):
                raise UploadError(f"{info.filename[:100]!r}: a name longer than {NAME_MAX_BYTES} bytes")
            target = (dest / rel).resolve()
            if not target.is_relative_to(dest):
                raise UploadError(f"{info.filename!r}: path leaves the upload folder")
            declared += info.file_size
            members.append((info, rel))
            if len(members) > limit_files:
                raise UploadError(f"the zip holds more than {limit_files} files")
            if declared > limit_bytes:
                raise UploadError(f"the zip unpacks to more than {limit_bytes} bytes")
        files = {rel for _info, rel in members}
        clash = sorted(files & {parent for rel in files for parent in rel.parents})
        if clash:
            raise UploadError(f"{str(clash[0])!r} is both a file and a folder in the zip")
        written: list[Path] = []
        total = 0
        for info, rel in members:
            target = dest / rel
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        total += len(chunk)
                        if total > limit_bytes:
                            raise UploadError(f"the zip unpacks to more than {limit_bytes} bytes")
                        out.write(chunk)
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError) as exc:
                raise UploadError(f"{info.filename!r}: cannot be extracted ({exc})") from None
            except OSError as exc:
                raise UploadError(f"{info.filename!r}: cannot be extracted ({exc.strerror})") from None
            written.append(Path(rel))
        return written


def find_pipeline_yaml(root: Path) -> Path:
    """The pipeline YAML of an extracted upload: `pipeline.yml` at the top or in its one folder."""
    root = Path(root)
    candidates = [root]
    entries = [p for p in root.iterdir() if p.name not in _IGNORED_PARTS]
    if len(entries) == 1 and entries[0].is_dir():
        candidates.append(entries[0])
    for folder in candidates:
        for name in ("pipeline.yml", "pipeline.yaml"):
            if (folder / name).is_file():
                return folder / name
    for folder in candidates:
        ymls = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in YAML_SUFFIXES)
        if len(ymls) == 1:
            return ymls[0]
    raise UploadError("the zip has no pipeline.yml at its top level")


def save_upload(uploaded, dest: Path) -> Path:
    """Write an uploaded `.yml`/`.yaml`/`.zip` under `dest`; return the pipeline YAML's path."""
    name = fit_filename(getattr(uploaded, "name", "") or "", "pipeline.yml")
    size = getattr(uploaded, "size", None)
    if size is not None and size > max_bytes():
        raise UploadError(f"{name}: larger than {max_bytes()} bytes")
    suffix = Path(name).suffix.lower()
    if suffix == ".zip":
        extract_zip(uploaded, dest / "upload")
        return find_pipeline_yaml(dest / "upload")
    if suffix in YAML_SUFFIXES:
        if size is not None and size > int(settings.STEPWISE_YAML_MAX_BYTES):
            raise UploadError(f"{name}: larger than {settings.STEPWISE_YAML_MAX_BYTES} bytes")
        target = dest / "upload" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            for chunk in uploaded.chunks() if hasattr(uploaded, "chunks") else [uploaded.read()]:
                out.write(chunk)
        return target
    raise UploadError(f"{name}: upload a .yml, .yaml or .zip file")


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` as {relative posix path: bytes} (for a step's code zip)."""
    root = Path(root)
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def zip_to_files(uploaded) -> dict[str, bytes]:
    """A step's code zip as {relative path: bytes}; a single top-level folder is unwrapped."""
    with tempfile.TemporaryDirectory(prefix="stepwise-code-") as tmp:
        root = Path(tmp) / "code"
        extract_zip(uploaded, root)
        entries = list(root.iterdir())
        if len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
        files = read_tree(root)
    return files


def relative_problems(problems: list[Problem], root: Path) -> list[Problem]:
    """Problems naming files by their path inside the upload, never by a path of the server.

    The folder is removed from messages too, spelled as given and resolved (a /tmp that is a
    symbolic link); a file outside it (none should be) is named by its name alone.
    """
    prefixes = sorted({str(root) + "/", str(root.resolve()) + "/"}, key=len, reverse=True)

    def relative(file: str) -> str:
        for prefix in prefixes:
            if file.startswith(prefix):
                return file.removeprefix(prefix)
        return Path(file).name if Path(file).is_absolute() else file

    def scrubbed(message: str) -> str:
        for prefix in prefixes:
            message = message.replace(prefix, "").replace(prefix.rstrip("/"), "the upload")
        return message

    return [replace(p, file=relative(p.file), message=scrubbed(p.message)) for p in problems]
