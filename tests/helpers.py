"""Test helpers that speak the hub's HTTP API the way a client does."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import httpx

from hub.context import HubContext
from hub.db import session_scope
from hub.security import Scopes
from hub.services import accounts

PASSWORD = "correct horse battery"


def manifest(
    name: str = "alice/detector",
    version: str = "1.0.0",
    *,
    description: str = "A test detector",
    task: str = "detection",
    tags: tuple[str, ...] = ("test",),
    weights: tuple[str, ...] = (),
    dependencies: dict[str, str] | None = None,
    extra: str = "",
    solver_extra: str = "",
) -> str:
    lines = [
        "[package]",
        f'name = "{name}"',
        f'version = "{version}"',
        f'description = "{description}"',
        f'task = "{task}"',
        "tags = [" + ", ".join(f'"{t}"' for t in tags) + "]",
        'license = "MIT"',
        extra,
        "",
        "[[solvers]]",
        'name = "detect"',
        'class = "solver:Detector"',
        solver_extra,
    ]
    for path in weights:
        lines += ["", "[[weights]]", f'path = "{path}"']
    if dependencies:
        lines += ["", "[dependencies]"] + [f'"{k}" = "{v}"' for k, v in dependencies.items()]
    return "\n".join(lines) + "\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class LiveHub:
    """A hub listening on a loopback port, plus its in-process context for setup."""

    url: str
    context: HubContext
    backend: str = ""
    _clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        c = httpx.Client(base_url=self.url, headers=headers, timeout=60, **kw)
        self._clients.append(c)
        return c

    def close_clients(self) -> None:
        for c in self._clients:
            c.close()
        self._clients.clear()

    def create_user(self, name: str, *, admin: bool = False, scopes: str = "read publish") -> str:
        """Create a user (password ``PASSWORD``) and return a token with ``scopes``."""
        ctx = self.context
        with session_scope(ctx.engine, write=True) as session:
            user = accounts.create_user(session, ctx.hasher, name, PASSWORD, admin=admin)
            _, secret = accounts.create_token(session, user, Scopes.parse(scopes))
        return secret

    def user_client(self, name: str, *, admin: bool = False, scopes: str | None = None) -> httpx.Client:
        scopes = scopes or ("read publish admin" if admin else "read publish")
        return self.client(self.create_user(name, admin=admin, scopes=scopes))


def upload(client: httpx.Client, data: bytes, *, chunk_size: int = 8 << 20) -> str:
    """Upload ``data`` through the resumable protocol unless the hub has it; return its sha256."""
    digest = sha256(data)
    check = client.post("/api/v1/blobs/check", json={"digests": [digest]})
    check.raise_for_status()
    if digest not in check.json()["missing"]:
        return digest
    created = client.post("/api/v1/uploads", json={"size": len(data)})
    assert created.status_code == 201, created.text
    location = created.json()["location"]
    for offset in range(0, len(data), chunk_size) or [0]:
        r = client.patch(location, content=data[offset : offset + chunk_size], headers={"upload-offset": str(offset)})
        assert r.status_code == 200, r.text
    done = client.post(location + "/finish", json={"sha256": digest})
    assert done.status_code == 201, done.text
    return digest


def publish(
    client: httpx.Client,
    name: str = "alice/detector",
    version: str = "1.0.0",
    *,
    files: dict[str, bytes] | None = None,
    manifest_text: str | None = None,
    private: bool | None = None,
    **manifest_kw: Any,
) -> httpx.Response:
    """Upload the files (plus the manifest) and publish them as ``name@version``."""
    text = manifest_text if manifest_text is not None else manifest(name, version, **manifest_kw)
    contents = {"cvflow.toml": text.encode(), **(files or {"solver.py": b"class Detector: pass\n"})}
    entries = [{"path": p, "size": len(b), "sha256": upload(client, b)} for p, b in contents.items()]
    body: dict[str, Any] = {"manifest": text, "files": entries}
    if private is not None:
        body["private"] = private
    ns, pkg = name.split("/", 1)
    return client.post(f"/api/v1/packages/{ns}/{pkg}/versions", json=body)


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    return str(body["error"]["code"])
