"""``cvflow dataset``: COCO, Pascal VOC, YOLO and ImageFolder in and out of dataset packages."""

from __future__ import annotations

from pathlib import Path

import click

from cvflow.commands._common import emit_json, handle_errors
from cvflow.progress import transfer_bar

_FORMATS = ("coco", "voc", "yolo", "imagefolder")  # cvflow.datasets.FORMATS, without importing it for --help
_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
_OUT = click.Path(path_type=Path)


@click.group()
def dataset() -> None:
    """Import and export datasets: COCO, Pascal VOC, YOLO and ImageFolder.

    A dataset is a package of kind = "dataset" in one canonical layout (images/<split>/ and
    COCO JSON in annotations/<split>.json), so `cvflow validate`, `cvflow publish` and
    `cvflow pull` work on it as on any package. See docs/datasets.md.
    """


@dataset.command("import")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(_FORMATS))
@click.argument("src", type=_DIR)
@click.argument("directory", type=_OUT)
@click.option("--name", required=True, metavar="NS/NAME", help="The package name, namespace/name.")
@click.option("--version", "version", default="1.0.0", show_default=True, help="The package version.")
@click.option("--description", metavar="TEXT", help="One line about the dataset.")
@click.option("--license", "license_", metavar="SPDX", help="The dataset's license, e.g. CC-BY-4.0.")
@click.option("--json", "as_json", is_flag=True, help="Print the new package's splits and counts as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or progress lines.")
@handle_errors
def import_(fmt: str, src: Path, directory: Path, name: str, version: str, description: str | None,
            license_: str | None, as_json: bool, quiet: bool) -> None:
    """Build a dataset package in DIRECTORY from SRC in FORMAT.

    Checks every image (PNG or JPEG, within the size limits) and every label (known class,
    box inside its image) and lists every problem at once. DIRECTORY must be new or empty.
    coco, voc and yolo hold detection datasets; imagefolder holds classification ones.

    \b
    Examples:
      cvflow dataset import coco ./coco-export ./digits --name alice/digits --version 1.0.0
      cvflow validate ./digits && cvflow publish ./digits
    """
    from cvflow.datasets import import_dataset

    with transfer_bar(quiet=quiet or as_json) as bar:
        manifest = import_dataset(fmt, src, directory, name=name, version=version, description=description,
                                  license=license_, progress=bar)
    info = manifest.dataset
    assert info is not None
    if as_json:
        emit_json({"path": str(directory), "name": str(manifest.name), "version": str(manifest.version),
                   **info.to_dict()})
        return
    counts = ", ".join(f"{split} {n}" for split, n in info.splits.items())
    click.echo(f"wrote {manifest.name} {manifest.version} to {directory}: {info.task}, "
               f"{len(info.classes)} classes, images: {counts}")
    click.echo(f"next: `cvflow validate {directory}` and `cvflow publish {directory}`")


@dataset.command("export")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(_FORMATS))
@click.argument("package", type=_DIR)
@click.argument("out", type=_OUT)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or progress lines.")
@handle_errors
def export(fmt: str, package: Path, out: Path, quiet: bool) -> None:
    """Write the dataset package in PACKAGE to OUT in FORMAT.

    The package is checked first, as `cvflow dataset check` does. OUT must be new or empty.

    \b
    Example:
      cvflow dataset export yolo ./digits ./digits-yolo
    """
    from cvflow.datasets import export_dataset

    with transfer_bar(quiet=quiet) as bar:
        ds = export_dataset(fmt, package, out, progress=bar)
    click.echo(f"wrote {sum(ds.image_count().values())} images as {fmt} to {out}")


@dataset.command("check")
@click.argument("package", default=".", type=_DIR)
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@handle_errors
def check(package: Path, quiet: bool) -> None:
    """Check a dataset package's images and labels against its manifest.

    Goes further than `cvflow validate` (which checks the manifest and the file counts, as
    the hub does): reads every annotation file and every image header.
    """
    from cvflow.datasets import validate_package

    with transfer_bar(quiet=quiet) as bar:
        manifest = validate_package(package, progress=bar)
    info = manifest.dataset
    assert info is not None
    click.echo(f"ok: {manifest.name} {manifest.version}: {sum(info.splits.values())} images, "
               f"{len(info.classes)} classes")
