"""An `mltable` input: a folder whose `MLTable` file names delimited files (Azure ML's
reference-yaml-mltable), read by a parallel job as one table.

Only what a folder of CSV files needs is read: `paths` (`file`, `folder`, `pattern`, relative to
the MLTable file) and one `read_delimited` transformation (`delimiter`, `header`, `encoding`).
Anything else is refused with its name, so a table is never read differently from Azure ML
without saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MLTABLE_FILE = "MLTable"
HEADERS = ("all_files_same_headers", "from_first_file", "all_files_different_headers", "no_header")
# Azure ML's encoding names -> Python's codecs.
ENCODINGS = {
    "utf8": "utf-8",
    "iso88591": "iso-8859-1",
    "latin1": "latin-1",
    "ascii": "ascii",
    "utf16": "utf-16",
    "utf32": "utf-32",
    "utf8bom": "utf-8-sig",
    "windows1252": "cp1252",
}
# read_delimited options that change nothing for a local read here (types are inferred anyway).
_IGNORED = ("empty_as_string", "infer_column_types", "support_multi_line", "include_path_column")


@dataclass(frozen=True)
class Delimited:
    """Delimited files read as one table, in order."""

    files: tuple[Path, ...]
    delimiter: str = ","
    header: str = "all_files_same_headers"
    encoding: str = "utf-8"


def is_mltable(folder: Path) -> bool:
    return folder.is_dir() and (folder / MLTABLE_FILE).is_file()


def single_csv(path: Path) -> Delimited:
    """A plain CSV file given as `uri_file`."""
    return Delimited(files=(path,))


def _inside(folder: Path, written: object, key: str) -> Path:
    if not isinstance(written, str) or not written.strip():
        raise ValueError(f"MLTable paths: '{key}' must be a relative path")
    text = written.strip()
    if "://" in text or text.startswith("azureml:"):
        raise ValueError(f"MLTable paths: {key} '{text}' is remote; only paths inside the MLTable's folder are read")
    rel = PurePosixPath(text.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"MLTable paths: {key} '{text}' must be a relative path inside the MLTable's folder")
    return folder / rel


def _paths(folder: Path, entries: object) -> tuple[Path, ...]:
    if not isinstance(entries, list) or not entries:
        raise ValueError("MLTable needs 'paths': a list of {file: ...}, {folder: ...} or {pattern: ...}")
    files: list[Path] = []
    for entry in entries:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ValueError(f"MLTable paths: each entry is one of file, folder or pattern, got {entry!r}")
        ((key, value),) = entry.items()
        if key == "file":
            path = _inside(folder, value, key)
            if not path.is_file():
                raise ValueError(f"MLTable paths: file '{value}' is not in the MLTable's folder")
            files.append(path)
        elif key == "folder":
            path = _inside(folder, value, key)
            if not path.is_dir():
                raise ValueError(f"MLTable paths: folder '{value}' is not in the MLTable's folder")
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.name != MLTABLE_FILE)
        elif key == "pattern":
            _inside(folder, value, key)
            matched = sorted(p for p in folder.glob(str(value).strip()) if p.is_file() and p.name != MLTABLE_FILE)
            if not matched:
                raise ValueError(f"MLTable paths: pattern '{value}' matches no file")
            files += matched
        else:
            raise ValueError(f"MLTable paths: unknown kind '{key}' (use file, folder or pattern)")
    return tuple(dict.fromkeys(files))  # a file named twice is read once, where first named


def _read_delimited(options: object) -> dict[str, str]:
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ValueError("MLTable read_delimited: its options are a mapping")
    read: dict[str, str] = {}
    for key, value in options.items():
        if key == "delimiter":
            if not isinstance(value, str) or len(value) != 1:
                raise ValueError(f"MLTable read_delimited: delimiter must be one character, got {value!r}")
            read["delimiter"] = value
        elif key == "header":
            if value not in HEADERS:
                raise ValueError(f"MLTable read_delimited: header must be one of {', '.join(HEADERS)}, got {value!r}")
            read["header"] = value
        elif key == "encoding":
            if value not in ENCODINGS:
                raise ValueError(
                    f"MLTable read_delimited: encoding must be one of {', '.join(ENCODINGS)}, got {value!r}"
                )
            read["encoding"] = ENCODINGS[value]
        elif key not in _IGNORED:
            raise ValueError(f"MLTable read_delimited: option '{key}' is not supported")
    return read


def read_mltable(folder: Path) -> Delimited:
    """The table the folder's MLTable file describes; ValueError saying what is not readable."""
    try:
        # Imported here: the driver runs in the step's own environment, which may lack PyYAML
        # when no input is an MLTable.
        import yaml  # noqa: PLC0415
    except ImportError:
        raise ValueError("reading an MLTable file needs PyYAML in the step's environment") from None
    try:
        spec = yaml.safe_load((folder / MLTABLE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"MLTable file cannot be read: {exc}") from None
    if not isinstance(spec, dict):
        raise ValueError("MLTable file must hold a mapping with 'paths' and 'transformations'")
    files = _paths(folder, spec.get("paths"))
    transformations = spec.get("transformations")
    if not isinstance(transformations, list) or not transformations:
        raise ValueError("MLTable needs a read_delimited transformation: only delimited (CSV) files are read")
    options: dict[str, str] | None = None
    for step in transformations:
        name = next(iter(step)) if isinstance(step, dict) and len(step) == 1 else step
        if name != "read_delimited":
            raise ValueError(f"MLTable transformation {name!r} is not supported (only read_delimited)")
        if options is not None:
            raise ValueError("MLTable has read_delimited twice")
        options = _read_delimited(step["read_delimited"])
    assert options is not None
    return Delimited(files=files, **options)
