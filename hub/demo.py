"""Publishes the example packages in ``examples/`` for ``cvflow-hub serve --demo``, and creates
the demo annotation project ``demo/digits-shifted``.

The hub reads the manifests and stores the files as blobs; it never imports or runs them. The
project's images are the PNGs that ``examples/digits-detector/make_demo.py`` wrote (digits in a
style the detector was not trained on); its suggestions come from a worker that runs
``demo/digits-detector`` on the visitor's machine (:data:`WORKER_HINT`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

from sqlmodel import select

from cvflow.manifest import MANIFEST_FILENAME, parse_manifest
from cvflow.package import scan_package_files
from hub.context import HubContext
from hub.db import ROOT, session_scope
from hub.errors import HubError
from hub.models import User
from hub.security import Scopes
from hub.services import accounts, packages
from hub.services.accounts import Principal
from hub.services.annotation import images
from hub.services.annotation.projects import create_project, find_project
from hub.services.blobs import user_holder

EXAMPLES = ROOT / "examples"
#: The demo annotation project and where its images are, under the examples.
PROJECT = "demo/digits-shifted"
PROJECT_IMAGES = Path("digits-detector") / "demo" / "images"
PROJECT_DESCRIPTION = ("Digits on uneven grey boards with stray strokes: a style demo/digits-detector was not"
                       " trained on. Fix its suggestions, snapshot, fine-tune.")
#: How to run the suggestion worker for the demo project (``{url}``: the hub's address; ``{hub}``:
#: ``cvflow-hub`` with the options that name serve's database).
WORKER_HINT = (
    "demo: suggestions for {project} come from a worker on your machine (it installs demo/digits-detector):\n"
    "  export CVFLOW_HUB={url} CVFLOW_TOKEN=$({hub} token create --user demo --scope read --scope annotate)\n"
    "  cvflow annotate suggest {project}\n"
    "and every {every} accepted items the hub queues a fine-tune, which a training worker runs and publishes:\n"
    "  CVFLOW_TOKEN=$({hub} token create --user demo --scope read --scope annotate --scope publish)"
    " cvflow worker --train"
)
#: The demo project fine-tunes its detector after every so many accepted items (docs/training.md).
FINETUNE_EVERY = 20


def load_demo(hub: HubContext, examples: Path = EXAMPLES) -> Iterator[str]:
    """What ``serve --demo`` loads: the example packages, then the demo annotation project."""
    yield from load_examples(hub, examples)
    yield from load_project(hub, examples / PROJECT_IMAGES)


def load_examples(hub: HubContext, examples: Path = EXAMPLES) -> Iterator[str]:
    """Publish every example package not yet on the hub; yields a line per package."""
    if not examples.is_dir():
        yield f"demo: no examples at {examples} (they ship with a source checkout)"
        return
    for manifest_path in sorted(examples.glob(f"*/{MANIFEST_FILENAME}")):
        pkg_dir = manifest_path.parent
        text = manifest_path.read_bytes().decode("utf-8")  # the manifest is the shipped file, byte for byte
        manifest = parse_manifest(text)
        namespace, name = manifest.name.namespace, manifest.name.name
        # The same file walk as `cvflow publish`, so the demo publishes what a user would.
        entries, problems = scan_package_files(pkg_dir)
        if problems:
            yield f"demo: skipped {manifest.name}: " + "; ".join(str(p) for p in problems)
            continue
        with session_scope(hub.engine, write=True) as session:
            owner = session.exec(select(User).where(User.name == namespace)).first()
            if owner is None:
                owner = accounts.create_user(session, hub.hasher, namespace, None)
        files = []
        for entry in entries:  # stored as the owner's uploads: they may reference them
            data = (pkg_dir / entry.path).read_bytes()
            files.append({**dataclasses.asdict(entry), "sha256": hub.uploads.put_small(data, grant_to=user_holder(owner.id))})
        who = Principal(user=owner, scopes=Scopes.parse("publish"))
        try:
            with session_scope(hub.engine, write=True) as session:
                packages.publish(session, hub.settings, who, namespace, name, manifest_toml=text, files=files)
            yield f"demo: published {manifest.name}@{manifest.version}"
        except HubError as exc:
            if exc.code != "version_exists":
                raise
            yield f"demo: {manifest.name}@{manifest.version} already published"


def _demo_owner(hub: HubContext, name: str) -> User:
    with session_scope(hub.engine, write=True) as session:
        owner = session.exec(select(User).where(User.name == name)).first()
        return owner if owner is not None else accounts.create_user(session, hub.hasher, name, None)


def load_project(hub: HubContext, image_dir: Path) -> Iterator[str]:
    """Create the demo project (once) and add the images in ``image_dir`` as its items (those it
    lacks: adding is idempotent); yields what it did."""
    files = sorted(image_dir.glob("*.png")) if image_dir.is_dir() else []
    if not files:
        yield f"demo: no images for {PROJECT} at {image_dir}"
        return
    namespace, name = PROJECT.split("/")
    owner = _demo_owner(hub, namespace)
    who = Principal(user=owner, scopes=Scopes.parse(["read", "annotate"]))
    with session_scope(hub.engine, write=True) as session:
        if find_project(session, namespace, name) is None:
            create_project(session, who, namespace=namespace, name=name, task="detection",
                           classes=[str(d) for d in range(10)], description=PROJECT_DESCRIPTION, private=False,
                           queue_order="uncertainty", dataset_package="demo/digits-shifted-data",
                           suggest={"package": "demo/digits-detector", "range": "*", "solver": "detect"})
            project = find_project(session, namespace, name)
            assert project is not None
            project.finetune_every = FINETUNE_EVERY  # fine-tunes go to demo/digits-detector's next versions
            session.add(project)
            yield f"demo: created the annotation project {PROJECT}"
    # As `cvflow annotate push` adds them: uploaded blobs, checked like any upload, then items.
    wanted = images.check_names([images.NewItem(hub.uploads.put_small(f.read_bytes(), grant_to=user_holder(owner.id)),
                                                f.name) for f in files])
    with session_scope(hub.engine) as session:
        project = find_project(session, namespace, name)
        assert project is not None
        sizes = images.check_blobs(session, who, project, wanted)
    headers = images.read_headers(hub.store, wanted, sizes)
    with session_scope(hub.engine, write=True) as session:
        project = find_project(session, namespace, name)
        assert project is not None
        added = images.add_items(session, who, project, wanted, headers)
    yield f"demo: {PROJECT} has {added.added + added.existing} images ({added.added} added)"
