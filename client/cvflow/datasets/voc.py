"""Pascal VOC (detection): one XML file per image, parsed with defusedxml.

On disk, as VOC and datumaro lay it out::

    Annotations/<stem>.xml
    JPEGImages/<file>
    ImageSets/Main/<split>.txt     one stem per line (without them: every image is "train")
    labelmap.txt                   datumaro's class list, "name:::" per line (optional on import)

Boxes follow datumaro's reading: ``x = xmin``, ``w = xmax - xmin`` (VOC's 1-based corners are
within a pixel of this). ``difficult``, ``truncated`` and ``pose`` are not carried.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import defusedxml
import defusedxml.ElementTree as SafeET

from cvflow.datasets.model import (
    MAX_XML_BYTES,
    Box,
    Dataset,
    Item,
    Problems,
    check_box,
    check_dataset,
    fail,
    image_size,
    safe_file_name,
)
from cvflow.errors import DatasetError
from cvflow.manifest.dataset import SPLIT_RE
from cvflow.progress import SILENT, Transfer

_DEFAULT_SPLIT = "train"


def _parse_xml(path: Path, where: str) -> ET.Element:
    """The root of an annotation XML file; DTDs, entities and external references are refused.

    Raises:
        DatasetError: ``too_large``, ``xml_forbidden`` or ``bad_xml``.
    """
    if path.stat().st_size > MAX_XML_BYTES:
        raise fail("too_large", where, f"{where} is over {MAX_XML_BYTES} bytes")
    try:
        root: ET.Element = SafeET.fromstring(path.read_bytes(), forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise fail("xml_forbidden", where,
                   f"{where}: DTDs, entities and external references are refused ({exc})") from exc
    except ET.ParseError as exc:
        raise fail("bad_xml", where, f"{where} is not well-formed XML: {exc}") from exc
    return root


def _number(el: ET.Element | None, tag: str) -> float | None:
    text = el.findtext(tag) if el is not None else None
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and value == value and abs(value) != float("inf") else None


def _labelmap(src: Path) -> list[str] | None:
    path = src / "labelmap.txt"
    if not path.is_file():
        return None
    names = [line.split(":")[0] for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return names


def _splits(src: Path, stems: list[str]) -> dict[str, list[str]]:
    sets = src / "ImageSets" / "Main"
    files = sorted(p for p in sets.glob("*.txt") if "_" not in p.stem) if sets.is_dir() else []
    if not files:
        return {_DEFAULT_SPLIT: stems}
    out: dict[str, list[str]] = {}
    for path in files:
        if not SPLIT_RE.match(path.stem):
            raise fail("invalid_split", path.name,
                       f"{path.name}: split name {path.stem!r} must match [a-z0-9_-]{{1,32}}")
        out[path.stem] = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out


def import_voc(src: Path, *, progress: Transfer = SILENT) -> Dataset:
    """Read a Pascal VOC directory.

    Classes come from ``labelmap.txt`` when there is one (a ``background`` entry that no box
    uses is dropped), else from the object names, sorted.

    Raises:
        DatasetError: every problem found, each with its own code (``xml_forbidden``,
            ``bad_xml``, ``missing_image``, ``coordinates_out_of_range``, ...).
    """
    ann_dir = src / "Annotations"
    if not ann_dir.is_dir():
        raise fail("missing_file", "Annotations", f"{src}: no Annotations/ directory")
    problems = Problems()
    parsed: dict[str, tuple[Item, list[tuple[str, float, float, float, float, str]]]] = {}
    xmls = sorted(ann_dir.glob("*.xml"))
    progress.log(f"reading {len(xmls)} VOC annotation files")
    for path in xmls:
        where = f"Annotations/{path.name}"
        try:
            root = _parse_xml(path, where)
        except DatasetError as exc:
            problems.extend(exc.problems)
            continue
        file_name = root.findtext("filename") or f"{path.stem}.jpg"
        image = src / "JPEGImages" / Path(file_name).name
        if not image.is_file():
            problems.add("missing_image", where, f"{where}: its image JPEGImages/{Path(file_name).name} does not exist")
            continue
        size = image_size(image, f"JPEGImages/{image.name}", problems)
        if size is None:
            continue
        w, h = _number(root.find("size"), "width"), _number(root.find("size"), "height")
        if w is not None and h is not None and (int(w), int(h)) != size:
            problems.add("image_size_mismatch", where,
                         f"{where}: the image is {size[0]}x{size[1]}, the XML says {w:g}x{h:g}")
            continue
        objects = []
        for i, obj in enumerate(root.iter("object")):
            name, bb = (obj.findtext("name") or "").strip(), obj.find("bndbox")
            corners = [_number(bb, tag) for tag in ("xmin", "ymin", "xmax", "ymax")]
            if not name or None in corners:
                problems.add("bad_xml", f"{where}.object[{i}]",
                             f"{where}: object {i} needs a name and numeric bndbox corners")
                continue
            x0, y0, x1, y1 = (float(c) for c in corners if c is not None)
            objects.append((name, x0, y0, x1 - x0, y1 - y0, f"{where}.object[{i}]"))
        parsed[path.stem] = (Item(image.name, image, size[0], size[1]), objects)
    names = sorted({o[0] for _, objs in parsed.values() for o in objs})
    classes = _labelmap(src) or names
    if "background" in classes and "background" not in names:
        classes = [c for c in classes if c != "background"]
    index = {name: i for i, name in enumerate(classes)}
    taken: set[str] = set()
    splits: dict[str, list[Item]] = {}
    used: set[str] = set()
    for split, stems in _splits(src, sorted(parsed)).items():
        items = []
        for stem in stems:
            if stem not in parsed:
                if not any(p.field == f"Annotations/{stem}.xml" for p in problems.items):
                    problems.add("missing_image", f"ImageSets/Main/{split}.txt",
                                 f"ImageSets/Main/{split}.txt names {stem!r}, which has no annotation or image")
                continue
            if stem in used:
                continue  # VOC lists an image in trainval and in train: the first split keeps it
            used.add(stem)
            item, objects = parsed[stem]
            for name, x, y, bw, bh, at in objects:
                if name not in index:
                    problems.add("unknown_class", at, f"{at}: class {name!r} is not in labelmap.txt")
                    continue
                box = Box(index[name], x, y, bw, bh)
                if check_box(box, item, at, problems):
                    item.boxes.append(box)
            item.file_name = safe_file_name(item.file_name, taken)
            items.append(item)
        splits[split] = items
    ds = Dataset("detection", classes, splits)
    check_dataset(ds, problems)
    problems.raise_if_any(f"the VOC dataset in {src} cannot be imported")
    return ds


def _xml(item: Item, classes: list[str]) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = item.file_name
    size = ET.SubElement(root, "size")
    for tag, number in (("width", item.width), ("height", item.height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(number)
    ET.SubElement(root, "segmented").text = "0"
    for b in item.boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = classes[b.category]
        for tag, value in (("pose", "Unspecified"), ("truncated", "0"), ("difficult", "0")):
            ET.SubElement(obj, tag).text = value
        bb = ET.SubElement(obj, "bndbox")
        for tag, v in (("xmin", b.x), ("ymin", b.y), ("xmax", b.x + b.w), ("ymax", b.y + b.h)):
            ET.SubElement(bb, tag).text = f"{round(v, 3):g}"
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def export_voc(ds: Dataset, out: Path, *, progress: Transfer = SILENT) -> None:
    """Write Annotations/, JPEGImages/, ImageSets/Main/<split>.txt and labelmap.txt under ``out``.

    Raises:
        DatasetError: ``unsupported_class_name`` for a class with ``:`` (labelmap.txt's separator).
    """
    from cvflow.datasets.layout import copy_images

    bad = [c for c in ds.classes if ":" in c]
    if bad:
        raise fail("unsupported_class_name", "classes", f"VOC's labelmap.txt cannot hold class names with ':': {bad}")
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    (out / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (out / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\n" + "".join(f"{c}:::\n" for c in ds.classes), encoding="utf-8")
    for split, items in ds.splits.items():
        for item in items:
            (out / "Annotations" / f"{Path(item.file_name).stem}.xml").write_bytes(_xml(item, ds.classes))
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text(
            "".join(f"{Path(i.file_name).stem}\n" for i in items), encoding="utf-8")
        copy_images(items, out / "JPEGImages", progress)
