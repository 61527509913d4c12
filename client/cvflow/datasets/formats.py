"""The import and export formats, and the two operations the CLI runs with them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cvflow.datasets.coco import export_coco, import_coco
from cvflow.datasets.imagefolder import export_imagefolder, import_imagefolder
from cvflow.datasets.layout import read_package, write_package
from cvflow.datasets.model import Dataset, fail
from cvflow.datasets.voc import export_voc, import_voc
from cvflow.datasets.yolo import export_yolo, import_yolo
from cvflow.manifest import Manifest
from cvflow.progress import SILENT, Transfer


@dataclass(frozen=True)
class Format:
    name: str
    task: str
    read: Callable[..., Dataset]
    write: Callable[..., None]


FORMATS: dict[str, Format] = {
    "coco": Format("coco", "detection", import_coco, export_coco),
    "voc": Format("voc", "detection", import_voc, export_voc),
    "yolo": Format("yolo", "detection", import_yolo, export_yolo),
    "imagefolder": Format("imagefolder", "classification", import_imagefolder, export_imagefolder),
}


def _format(name: str) -> Format:
    fmt = FORMATS.get(name)
    if fmt is None:
        raise fail("unknown_format", "format", f"unknown format {name!r}; one of {', '.join(FORMATS)}")
    return fmt


def import_dataset(fmt: str, src: Path, out: Path, *, name: str, version: str, description: str | None = None,
                   license: str | None = None, progress: Transfer = SILENT) -> Manifest:
    """Read ``src`` in format ``fmt`` and write a dataset package in the canonical layout to ``out``.

    Raises:
        DatasetError: the source is malformed (every problem, each with its code), the format
            is unknown, or ``out`` is not empty.
        ManifestError: the name, version or class names break a manifest rule.
    """
    reader = _format(fmt)
    if not src.is_dir():
        raise fail("missing_file", str(src), f"{src} is not a directory")
    ds = reader.read(src, progress=progress)
    return write_package(ds, out, name=name, version=version, description=description, license=license,
                         progress=progress)


def export_dataset(fmt: str, package: Path, out: Path, *, progress: Transfer = SILENT) -> Dataset:
    """Write the dataset package in ``package`` to directory ``out`` in format ``fmt``.

    The package is checked first (as :func:`cvflow.datasets.layout.read_package`); ``out``
    is written as ``<out>.incomplete`` and renamed when complete.

    Raises:
        DatasetError: the package is invalid, ``format_task_mismatch`` (e.g. a
            classification dataset to YOLO), or ``out`` is not empty.
        ManifestError: the package's manifest is missing, invalid or not a dataset's.
    """
    writer = _format(fmt)
    _, ds = read_package(package, progress=progress)
    if ds.task != writer.task:
        raise fail("format_task_mismatch", "format", f"{fmt} holds {writer.task} datasets; this one is {ds.task}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise fail("out_exists", str(out), f"{out} exists and is not empty; choose a new directory")
    tmp = out.with_name(f".{out.name}.incomplete")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        writer.write(ds, tmp, progress=progress)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ds
