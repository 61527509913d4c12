"""Datasets as packages: the canonical layout, and COCO, VOC, YOLO and ImageFolder in and out.

A dataset package is a package of ``kind = "dataset"`` (``cvflow.manifest.dataset``) whose
files follow one layout (``layout``): ``images/<split>/<file>`` and
``annotations/<split>.json`` in COCO JSON. Importers read a format into a :class:`Dataset`
and exporters write one out (``formats``); every input is checked on the way in, and bad
input raises :class:`cvflow.errors.DatasetError` listing each problem with a stable code.
Image sizes come from PNG/JPEG headers (``images``), so the client needs no image library.
See ``docs/datasets.md``.
"""

from cvflow.datasets.formats import FORMATS, export_dataset, import_dataset
from cvflow.datasets.layout import read_package, validate_package, write_package
from cvflow.datasets.model import Box, Dataset, Item

__all__ = [
    "FORMATS",
    "Box",
    "Dataset",
    "Item",
    "export_dataset",
    "import_dataset",
    "read_package",
    "validate_package",
    "write_package",
]
