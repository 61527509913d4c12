"""ImageFolder (classification): the class is the name of the image's directory.

On disk, as torchvision's ``ImageFolder`` and datumaro's ``imagenet_with_subset_dirs`` read it::

    <split>/<class>/<file>

On import, a directory whose subdirectories hold images directly is one ``train`` split
(``<class>/<file>``); otherwise each subdirectory is a split. Classes are the class
directory names, sorted, as torchvision orders them.
"""

from __future__ import annotations

from pathlib import Path

from cvflow.datasets.model import Dataset, Item, Problems, check_dataset, fail, image_size, safe_file_name
from cvflow.manifest.dataset import SPLIT_RE
from cvflow.progress import SILENT, Transfer


def _dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))


def import_imagefolder(src: Path, *, progress: Transfer = SILENT) -> Dataset:
    """Read an ImageFolder tree (see the module docstring).

    Raises:
        DatasetError: every problem found (``not_an_image``, ``image_too_large``, ...).
    """
    if not src.is_dir():
        raise fail("missing_file", str(src), f"{src} is not a directory")
    top = _dirs(src)
    # Split directories hold class directories and no images of their own.
    split_layout = bool(top) and all(_dirs(d) and not _files(d) for d in top)
    trees = {d.name: d for d in top} if split_layout else {"train": src}
    problems = Problems()
    for name in trees:
        if not SPLIT_RE.match(name):
            raise fail("invalid_split", name, f"{name}/: split name must match [a-z0-9_-]{{1,32}}")
    classes = sorted({c.name for tree in trees.values() for c in _dirs(tree)})
    index = {name: i for i, name in enumerate(classes)}
    taken: set[str] = set()
    splits: dict[str, list[Item]] = {}
    for split, tree in trees.items():
        items: list[Item] = []
        for stray in _files(tree):
            where = stray.relative_to(src).as_posix()
            problems.add("unexpected_file", where, f"{where}: an image must be in a class directory")
        for class_dir in _dirs(tree):
            files = _files(class_dir)
            progress.log(f"reading {split}/{class_dir.name}: {len(files)} images")
            for path in files:
                where = path.relative_to(src).as_posix()
                size = image_size(path, where, problems)
                if size is None:
                    continue
                items.append(Item(safe_file_name(path.name, taken), path, *size, label=index[class_dir.name]))
            for nested in _dirs(class_dir):
                where = nested.relative_to(src).as_posix()
                problems.add("unexpected_file", where, f"{where}/: class directories cannot be nested")
        splits[split] = items
    ds = Dataset("classification", classes, splits)
    check_dataset(ds, problems)
    problems.raise_if_any(f"the ImageFolder dataset in {src} cannot be imported")
    return ds


def export_imagefolder(ds: Dataset, out: Path, *, progress: Transfer = SILENT) -> None:
    """Write ``<split>/<class>/<file>`` under ``out``; every class has its directory, even if empty."""
    from cvflow.datasets.layout import copy_images

    for split, items in ds.splits.items():
        for i, name in enumerate(ds.classes):
            copy_images([x for x in items if x.label == i], out / split / name, progress)
