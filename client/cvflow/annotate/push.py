"""``cvflow annotate push``: the PNG and JPEG files of a folder become a project's items.

Every image is checked here first, by its header (:func:`cvflow.datasets.images.read_header`,
the hub's own rule) and its name (flat, portable, a unique stem: the canonical layout's rule,
docs/datasets.md), so a folder with one bad file uploads nothing. Then the blobs the hub lacks
are uploaded as a publish uploads them (resumable, each session kept in
``<state_dir>/uploads`` until the blob is stored), and the items are added in chunks of
:data:`CHUNK`. Adding is idempotent: an image the project has under the same name counts as
``existing``, so a push that was cut off is finished by running it again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvflow.api import HubClient
from cvflow.datasets.images import IMAGE_SUFFIXES, ImageHeader, ImageProblem, read_header
from cvflow.errors import HubError, HubNotFoundError, Problem, ValidationError
from cvflow.manifest.dataset import IMAGE_NAME_RE, SPLIT_RE
from cvflow.progress import SILENT, Transfer, format_size
from cvflow.publish import UploadState

#: Items per ``POST .../items`` call.
CHUNK = 500
# The hub's rule for an item's name (hub/services/annotation/images.py), checked before uploading.


@dataclass(frozen=True)
class Image:
    path: Path
    size: int
    sha256: str
    header: ImageHeader


@dataclass
class PushReport:
    images: int
    size: int
    uploaded: int  # blobs sent
    present: int  # blobs the hub had already
    added: int  # new items
    existing: int  # items the project had already

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def scan_images(directory: Path) -> list[Image]:
    """The PNG and JPEG files directly in ``directory``, by name, each checked and hashed.

    Raises:
        ValidationError: no images, or any file broke a rule (every problem listed).
    """
    if not directory.is_dir():
        raise ValidationError(f"{directory} is not a folder")
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    problems: list[Problem] = []
    stems: dict[str, str] = {}
    images = []
    for path in paths:
        name = path.name
        if not IMAGE_NAME_RE.match(name):
            problems.append(Problem("invalid_path", name, f"{name}: an item's name is a flat portable name"
                                    " (letters, digits, '.', '_', '-', at most 128 characters); rename it"))
            continue
        stem = path.stem.casefold()
        if stem in stems:
            problems.append(Problem("invalid_path", name, f"{name} and {stems[stem]} have the same name but for"
                                    " the suffix or case; a project's names must differ"))
            continue
        stems[stem] = name
        try:
            header = read_header(path)
        except ImageProblem as exc:
            problems.append(exc.problem)
            continue
        images.append(Image(path, path.stat().st_size, _sha256(path), header))
    if problems:
        raise ValidationError(f"{len(problems)} file(s) in {directory} cannot be pushed; nothing was uploaded",
                              problems)
    if not images:
        raise ValidationError(f"{directory} has no PNG or JPEG files (.png, .jpg, .jpeg)")
    return images


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def push_images(client: HubClient, project: str, directory: Path, *, split: str = "train", state_dir: Path,
                progress: Transfer | None = None) -> PushReport:
    """Upload the images of ``directory`` and add them to ``project`` as items of ``split``.

    Raises:
        ValidationError: a bad split, no images, or a file that breaks a rule (nothing uploaded).
        HubNotFoundError: no such project (``project_not_found``).
        HubAuthError: the caller may not add images (owners only).
        HubError: the hub refused the items (``invalid_image``, ``invalid_files``, ``missing_blobs``).
    """
    progress = progress or SILENT
    if not SPLIT_RE.match(split):
        raise ValidationError(f"split {split!r}: 1 to 32 of a-z, 0-9, '_' and '-', starting with a letter or digit")
    client.project(project)  # not found / not allowed before anything is uploaded
    images = scan_images(directory)
    by_digest = {i.sha256: i for i in images}
    missing = client.missing_blobs(by_digest)
    state = UploadState(state_dir / "uploads")
    todo = sorted((by_digest[d] for d in missing), key=lambda i: i.path.name)
    total = sum(i.size for i in images)
    progress.log(f"{len(images)} images ({format_size(total)}); {len(todo)} to upload"
                 f" ({format_size(sum(i.size for i in todo))}), {len(by_digest) - len(todo)} already on the hub")
    bar = progress.add(f"uploading {len(todo)} images", sum(i.size for i in todo)) if todo else None
    for image in todo:
        _upload(client, image, state, progress, bar)
    added = existing = 0
    for start in range(0, len(images), CHUNK):
        chunk = images[start : start + CHUNK]
        doc = client.add_items(project, [{"sha256": i.sha256, "file_name": i.path.name, "split": split}
                                         for i in chunk])
        added += int(doc.get("added", 0))
        existing += int(doc.get("existing", 0))
        progress.log(f"added {start + len(chunk)} of {len(images)} images to {project}")
    return PushReport(len(images), total, len(todo), len(by_digest) - len(todo), added, existing)


def _upload(client: HubClient, image: Image, state: UploadState, progress: Transfer, bar: int | None) -> None:
    location = state.load(image.sha256, hub=client.base_url, size=image.size)
    if location is not None:
        try:
            client.upload_offset(location)
        except HubNotFoundError:
            location = None  # expired or finished on the hub; start again

    def advance(n: int) -> None:
        if bar is not None:
            progress.advance(bar, n)

    def keep(new_location: str) -> None:
        state.save(image.sha256, hub=client.base_url, size=image.size, location=new_location, path=str(image.path))

    try:
        with image.path.open("rb") as source:
            client.upload_file(source, image.size, image.sha256, location=location, progress=advance,
                               on_location=keep)
    except HubError as exc:
        if exc.code in ("digest_mismatch", "size_mismatch"):
            state.forget(image.sha256)
            raise HubError(f"{image.path} changed while it was uploaded; push again ({exc.message})",
                           code=exc.code, status=exc.status, details=exc.details) from exc
        raise
    state.forget(image.sha256)
