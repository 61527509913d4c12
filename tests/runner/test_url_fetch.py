"""The runner's URL fetch (``cvflow.runner.images.fetch``), which image inputs given as
``{"url": ...}`` and Label Studio's task images both use, against two real loopback HTTP
servers: redirects stay under the allowed prefixes, and an ``Authorization`` header follows a
redirect only while it stays under ``auth_under``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cvflow.runner.errors import RunnerError
from cvflow.runner.images import ImagePolicy, fetch


class _Server:
    """A loopback server: ``/to?u=URL`` redirects there, anything else answers its path; each
    request's path and Authorization header are recorded."""

    def __init__(self) -> None:
        seen: list[tuple[str, str | None]] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append((self.path.split("?")[0], self.headers.get("Authorization")))
                if self.path.startswith("/to?u="):
                    self.send_response(302)
                    self.send_header("Location", self.path.removeprefix("/to?u="))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def servers() -> Iterator[tuple[_Server, _Server]]:
    home, other = _Server(), _Server()
    yield home, other
    for s in (home, other):
        s.httpd.shutdown()
        s.httpd.server_close()


def test_authorization_follows_redirects_only_under_auth_under(servers: tuple[_Server, _Server]) -> None:
    home, other = servers
    policy = ImagePolicy(allow_urls=(other.url + "/",))
    allowed = (*policy.allow_urls, home.url + "/")
    auth = {"Accept": "*/*", "Authorization": "Token secret"}

    # within home: the token goes along
    assert fetch(f"{home.url}/to?u={home.url}/a.png", "image", policy, allowed=allowed, headers=auth,
                 auth_under=(home.url + "/",)) == b"/a.png"
    assert home.seen == [("/to", "Token secret"), ("/a.png", "Token secret")]

    # away from home, to another allowed prefix: the token is dropped
    assert fetch(f"{home.url}/to?u={other.url}/b.png", "image", policy, allowed=allowed, headers=auth,
                 auth_under=(home.url + "/",)) == b"/b.png"
    assert other.seen == [("/b.png", None)]


def test_redirects_and_urls_outside_the_prefixes_are_refused(servers: tuple[_Server, _Server]) -> None:
    home, other = servers
    policy = ImagePolicy(allow_urls=(home.url + "/",))
    with pytest.raises(RunnerError) as outside:
        fetch(f"{other.url}/x.png", "image", policy)
    assert outside.value.code == "url_not_allowed" and "--allow-url" not in outside.value.message
    with pytest.raises(RunnerError) as refused:
        fetch(f"{other.url}/x.png", "image", policy, refusal="not under Label Studio's URL")
    assert refused.value.message == "image: not under Label Studio's URL"
    with pytest.raises(RunnerError) as redirected:
        fetch(f"{home.url}/to?u={other.url}/x.png", "image", policy)
    assert redirected.value.code == "url_fetch_failed" and "not allowed" in redirected.value.message
    assert other.seen == []  # the redirect was not followed


def test_a_body_over_the_limit_is_refused(servers: tuple[_Server, _Server]) -> None:
    home, _ = servers
    policy = ImagePolicy(allow_urls=(home.url + "/",), max_bytes=4)
    with pytest.raises(RunnerError) as big:
        fetch(f"{home.url}/longer-than-four.png", "image", policy)
    assert big.value.code == "image_too_large"
