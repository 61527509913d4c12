"""Publishes the example packages in ``examples/`` for ``cvflow-hub serve --demo``.

The hub reads the manifests and stores the files as blobs; it never imports or runs them.
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
from hub.services.blobs import user_holder

EXAMPLES = ROOT / "examples"


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
