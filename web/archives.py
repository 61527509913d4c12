"""Zip archives for the website's dataset transfers: written as a stream, read within limits.

- :func:`zip_stream` writes a directory as a zip while a response sends it, a piece at a time
  (zipfile over a write-only pipe, with data descriptors instead of seeking back).
- :func:`unpack` reads a zip someone uploaded: every entry is checked on the zip's central
  directory before a byte is written (no absolute paths, no ``..``, no links, at most
  :data:`MAX_ENTRIES` entries and :data:`MAX_UNPACKED_BYTES`, no entry expanding past
  :data:`MAX_RATIO` times its compressed size), and the bytes written are counted again.
- :func:`dataset_root` and :func:`detect_format` find the dataset folder in what was unpacked
  and the format its layout says.

Refusals are :class:`cvflow.errors.DatasetError` problems with stable codes (``bad_archive``,
``invalid_path``, ``too_large``, ``unknown_format``; docs/datasets.md).
"""

from __future__ import annotations

import re
import stat
import weakref
import zipfile
import zlib
from collections.abc import Callable, Generator
from pathlib import Path
from typing import IO, Any

from cvflow.datasets.model import Problems, fail

#: Most bytes an imported zip may unpack to, and most entries (files and directories) it may hold.
MAX_UNPACKED_BYTES = 2 << 30
MAX_ENTRIES = 200_000
#: An entry larger than RATIO_FLOOR may expand at most MAX_RATIO times its compressed size
#: (PNG and JPEG barely compress; COCO JSON about 10 to 20 times).
MAX_RATIO = 100
RATIO_FLOOR = 1 << 20
_BLOCK = 1 << 20
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_DRIVE = re.compile(r"\A[A-Za-z]:")
#: Not part of a dataset: what macOS's archiver adds beside each file.
_SKIPPED_TOP = "__MACOSX"


class _Pipe:
    """A write-only file whose bytes are taken out as they come: zipfile writes, the response reads."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def zip_stream(root: Path, top: str, *, on_close: Callable[[], None]) -> Generator[bytes, None, None]:
    """The files and directories under ``root`` as a zip, in pieces of about a MiB, all under
    ``top/``; images are stored as they are (they do not compress), the rest deflated.

    ``on_close`` runs once when the stream ends, however it ends: read to the end, closed by a
    client that went away, or dropped before its first piece (when a generator's ``finally``
    never runs, so a finalizer calls it).
    """
    once: list[weakref.finalize[Any, Any]] = []
    body = _zip_pieces(root, top, once)
    once.append(weakref.finalize(body, on_close))  # a finalize runs its function once, whoever calls it
    return body


def _zip_pieces(root: Path, top: str, once: list[weakref.finalize[Any, Any]]) -> Generator[bytes, None, None]:
    pipe = _Pipe()
    try:
        with zipfile.ZipFile(pipe, "w") as zf:  # no tell() or seek(): zipfile writes data descriptors
            zf.mkdir(f"{top}/")
            for path in sorted(root.rglob("*")):
                name = f"{top}/{path.relative_to(root).as_posix()}"
                if path.is_dir():
                    zf.mkdir(name)  # an empty class directory keeps its class (ImageFolder)
                    continue
                info = zipfile.ZipInfo.from_file(path, name)
                info.compress_type = zipfile.ZIP_STORED if path.suffix.lower() in _IMAGE_SUFFIXES else zipfile.ZIP_DEFLATED
                with path.open("rb") as src, zf.open(info, "w", force_zip64=info.file_size >= 1 << 31) as dest:
                    while block := src.read(_BLOCK):
                        dest.write(block)
                        if data := pipe.take():
                            yield data
                if data := pipe.take():
                    yield data
        yield pipe.take()
    finally:
        once[0]()



def _entry_problem(name: str, info: zipfile.ZipInfo) -> tuple[str, str] | None:
    """``(code, message)`` when the entry may not be unpacked, else None."""
    parts = name.split("/")
    if "\\" in name or "\0" in name or name.startswith("/") or _DRIVE.match(name) or ".." in parts:
        return "invalid_path", f"{name!r} points outside the archive's folder (absolute, '..' or '\\')"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "invalid_path", f"{name} is a symbolic link; links are not unpacked"
    if info.flag_bits & 0x1:
        return "bad_archive", f"{name} is encrypted"
    if (not info.is_dir() and info.file_size > RATIO_FLOOR
            and info.file_size > MAX_RATIO * max(info.compress_size, 1)):
        return "too_large", (f"{name} expands {info.file_size // max(info.compress_size, 1)} times its compressed "
                             f"size, past the {MAX_RATIO} times taken (a zip bomb?)")
    return None


def unpack(fileobj: IO[bytes], dest: Path) -> None:
    """Unpack the zip ``fileobj`` into the empty directory ``dest``, within the limits above.

    Every entry is checked on the zip's directory first, so a refused archive writes nothing.

    Raises:
        DatasetError: ``bad_archive`` (not a zip, encrypted, corrupt), ``invalid_path`` (absolute
            paths, ``..``, links, a name twice) or ``too_large`` (entries, size, ratio).
    """
    try:
        zf = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise fail("bad_archive", "archive", "the file is not a zip archive") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            raise fail("too_large", "archive", f"the archive has {len(infos)} entries; at most {MAX_ENTRIES} are taken")
        problems = Problems()
        total = 0
        wanted: list[tuple[zipfile.ZipInfo, list[str]]] = []
        for info in infos:
            name = info.filename
            if name.split("/", 1)[0] == _SKIPPED_TOP:
                continue
            why = _entry_problem(name, info)
            if why is not None:
                problems.add(why[0], name, why[1])
                continue
            total += 0 if info.is_dir() else info.file_size
            wanted.append((info, [part for part in name.split("/") if part not in ("", ".")]))
        if total > MAX_UNPACKED_BYTES:
            problems.add("too_large", "archive", f"the archive unpacks to {total} bytes; at most {MAX_UNPACKED_BYTES} "
                                                 "are taken")
        problems.raise_if_any("the archive cannot be unpacked")
        written = 0
        for info, parts in wanted:
            if not parts:
                continue
            target = dest.joinpath(*parts)
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("xb") as out:
                    while block := src.read(_BLOCK):
                        written += len(block)
                        if written > MAX_UNPACKED_BYTES:  # the directory's sizes bound this; never trust them
                            raise fail("too_large", "archive", "the archive unpacks to more than it declares")
                        out.write(block)
            except FileExistsError as exc:
                raise fail("invalid_path", info.filename, f"{info.filename} is in the archive twice") from exc
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error, OSError) as exc:
                raise fail("bad_archive", info.filename, f"{info.filename} cannot be unpacked: {exc}") from exc


def _visible(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.name != _SKIPPED_TOP)


def _format_of(root: Path) -> str | None:
    """The format a folder's layout says, or None."""
    if (root / "annotations").is_dir() and any((root / "annotations").glob("*.json")):
        return "coco"
    if (root / "Annotations").is_dir():
        return "voc"
    if (root / "obj.names").is_file() or (root / "classes.txt").is_file():
        return "yolo"
    entries = _visible(root)
    if entries and all(p.is_dir() for p in entries):
        return "imagefolder"
    return None


def dataset_root(root: Path) -> Path:
    """The folder of the dataset in an unpacked zip: the zip's root, or the one folder it holds
    when that is what was zipped (``digits/annotations/...``, ``digits/train/cat/...``)."""
    for _ in range(3):
        entries = _visible(root)
        if len(entries) != 1 or not entries[0].is_dir():
            break
        inner = entries[0]
        subs = [p for p in _visible(inner) if p.is_dir()]
        splits_inside = bool(subs) and all(any(q.is_dir() for q in _visible(s)) for s in subs)
        if _format_of(inner) in ("coco", "voc", "yolo") or splits_inside:
            root = inner
        else:
            break
    return root


def detect_format(root: Path) -> str:
    """Raises DatasetError ``unknown_format`` when the layout names none."""
    found = _format_of(root)
    if found is None:
        raise fail("unknown_format", "format", "the archive's layout is none of COCO (annotations/*.json), VOC "
                                               "(Annotations/), YOLO (obj.names) or ImageFolder (a folder per class); "
                                               "choose the format")
    return found
