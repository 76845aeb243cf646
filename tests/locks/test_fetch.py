"""Fetching on a corporate network, against real local servers: an HTTPS index signed by a
private CA, credentials from ~/.netrc or the URL (and kept from other hosts a redirect leads
to), a CONNECT proxy with `NO_PROXY` ranges, retries of what may pass (a body cut short, a 503)
and of nothing else, and a find-links folder named by a file:// URL."""

from __future__ import annotations

import base64
import hashlib
import http.server
import select
import socket
import socketserver
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from lambda_rules import fetch
from tests.locks.test_any_lock import lambda_zip
from tests.locks.test_bad_input import pylock, tiny_wheel

WHEEL = b"the bytes of a wheel, as an index serves them" * 100
NAME = "x-1.0-py3-none-any.whl"
SHA256 = hashlib.sha256(WHEEL).hexdigest()
TOKEN = "Basic " + base64.b64encode(b"alice:s3cret").decode()


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> dict[str, Path]:
    """A private CA and a certificate it signs for localhost and 127.0.0.1 (openssl)."""
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost",
    )  # fmt: skip
    (d / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "authorityKeyIdentifier=keyid\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf",
    )  # fmt: skip
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key"}


class Index:
    """An HTTPS server: each path answers with its planned responses in turn (the last one
    again once they run out); every request's path and headers are kept."""

    def __init__(self, tls: dict[str, Path], plan: dict[str, list[tuple]]) -> None:
        self.plan, self.requests, self.connections = plan, [], 0
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                index.requests.append((self.path, dict(self.headers)))
                answers = index.plan[self.path]
                kind, *args = answers.pop(0) if len(answers) > 1 else answers[0]
                getattr(self, f"_{kind}")(*args)

            def _body(self, data: bytes, sent: int | None = None) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:sent])
                self.close_connection = True

            def _auth(self, data: bytes) -> None:
                if self.headers.get("Authorization") == TOKEN:
                    self._body(data)
                else:
                    self._status(401)

            def _cut(self, data: bytes) -> None:
                self._body(data, len(data) // 2)

            def _redirect(self, url: str) -> None:
                self.send_response(302)
                self.send_header("Location", url)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _status(self, code: int) -> None:
                self.send_error(code)

            def log_message(self, *args: object) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls["cert"], tls["key"])

        class Server(http.server.ThreadingHTTPServer):
            def get_request(self):  # type: ignore[no-untyped-def]
                sock, address = super().get_request()
                index.connections += 1
                try:
                    return context.wrap_socket(sock, server_side=True), address
                except (ssl.SSLError, OSError):
                    sock.close()
                    raise

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, host: str = "127.0.0.1", userinfo: str = "") -> str:
        return f"https://{userinfo}{host}:{self.server.server_address[1]}{path}"


@pytest.fixture
def index(tls, monkeypatch, tmp_path):
    """A factory of indexes the fetcher trusts (PIP_CERT), with retries at once and no netrc."""
    monkeypatch.setattr(fetch, "RETRY_BACKOFF_SECONDS", 0)
    monkeypatch.setenv("PIP_CERT", str(tls["ca"]))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for variable in ("LAMBDA_ZIP_CA_CERTS", "NETRC", "PIP_FIND_LINKS", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(variable, raising=False)
    started = []
    yield lambda plan: started.append(Index(tls, plan)) or started[-1]
    for server in started:
        server.server.shutdown()


def fetched(tmp_path: Path, url: str) -> bytes:
    cache = fetch.WheelCache(tmp_path / "cache")
    return cache.fetch(fetch.Wanted(url, SHA256)).read_bytes()


def test_a_private_ca_named_by_PIP_CERT_is_trusted(index, tmp_path):
    server = index({f"/{NAME}": [("body", WHEEL)]})
    assert fetched(tmp_path, server.url(f"/{NAME}")) == WHEEL


def test_an_untrusted_certificate_fails_at_once_naming_the_url(index, tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")
    server = index({f"/{NAME}": [("body", WHEEL)]})
    with pytest.raises(fetch.FetchError, match="CERTIFICATE_VERIFY_FAILED") as raised:
        fetched(tmp_path, server.url(f"/{NAME}"))
    assert str(raised.value).startswith(server.url(f"/{NAME}"))
    assert server.connections == 1  # not tried again
    assert not list((tmp_path / "cache").rglob("*.whl"))


def test_netrc_credentials_are_sent_from_a_netrc_others_may_read(index, tmp_path):
    """Python's netrc skips such a ~/.netrc unless it is named; pip and curl read it."""
    server = index({f"/{NAME}": [("auth", WHEEL)]})
    (tmp_path / "home").mkdir()
    netrc = tmp_path / "home/.netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o644)
    assert fetched(tmp_path, server.url(f"/{NAME}")) == WHEEL


def test_credentials_in_the_url_are_sent_and_never_shown(index, tmp_path):
    server = index({f"/{NAME}": [("auth", WHEEL)], "/missing.whl": [("status", 404)]})
    assert fetched(tmp_path, server.url(f"/{NAME}", userinfo="alice:s3cret@")) == WHEEL
    with pytest.raises(fetch.FetchError, match="HTTP 404") as raised:
        fetched(tmp_path, server.url("/missing.whl", userinfo="alice:s3cret@"))
    assert "s3cret" not in str(raised.value)
    assert "alice:***@" in str(raised.value)


def test_a_redirect_keeps_credentials_on_the_same_host_only(index, tmp_path):
    """An index that redirects to a CDN must not hand it the index's password."""
    cdn = index({f"/{NAME}": [("body", WHEEL)]})
    server = index(
        {
            "/same.whl": [("redirect", "/x/" + NAME)],
            f"/x/{NAME}": [("auth", WHEEL)],
            "/other.whl": [("redirect", cdn.url(f"/{NAME}", host="localhost"))],
        }
    )
    userinfo = "alice:s3cret@"
    cache = fetch.WheelCache(tmp_path / "cache")
    assert cache.fetch(fetch.Wanted(server.url("/same.whl", userinfo=userinfo), SHA256))
    assert server.requests[-1][1].get("Authorization") == TOKEN
    cache = fetch.WheelCache(tmp_path / "other-cache")
    assert cache.fetch(fetch.Wanted(server.url("/other.whl", userinfo=userinfo), SHA256))
    assert server.requests[-1][1].get("Authorization") == TOKEN
    ((path, headers),) = cdn.requests
    assert path == f"/{NAME}" and "Authorization" not in headers


def test_a_body_cut_short_is_tried_again(index, tmp_path):
    server = index({f"/{NAME}": [("cut", WHEEL), ("body", WHEEL)], "/cut.whl": [("cut", WHEEL)]})
    assert fetched(tmp_path, server.url(f"/{NAME}")) == WHEEL
    assert len(server.requests) == 2
    with pytest.raises(fetch.FetchError, match="cannot download it .*closed after") as raised:
        fetched(tmp_path, server.url("/cut.whl"))
    assert "altered" not in str(raised.value)
    assert len(server.requests) == 2 + fetch.ATTEMPTS


def test_server_errors_are_tried_again_and_client_errors_are_not(index, tmp_path):
    server = index({f"/{NAME}": [("status", 503), ("body", WHEEL)], "/gone.whl": [("status", 404)]})
    assert fetched(tmp_path, server.url(f"/{NAME}")) == WHEEL
    assert len(server.requests) == 2
    with pytest.raises(fetch.FetchError, match="HTTP 404"):
        fetched(tmp_path, server.url("/gone.whl"))
    assert len(server.requests) == 3


class ConnectProxy(socketserver.ThreadingTCPServer):
    """An HTTPS proxy (CONNECT) that keeps each tunnel's target."""

    daemon_threads = True

    def __init__(self, refusals: int = 0) -> None:
        self.targets: list[str] = []
        proxy = self

        class Tunnel(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += self.request.recv(4096)
                target = head.split()[1].decode()
                proxy.targets.append(target)
                if len(proxy.targets) <= refusals:
                    self.request.sendall(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
                    return
                host, port = target.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)))
                self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                ends = [self.request, upstream]
                while True:
                    readable, _, _ = select.select(ends, [], [], 10)
                    if not readable:
                        return
                    for end in readable:
                        data = end.recv(65536)
                        if not data:
                            return
                        (upstream if end is self.request else self.request).sendall(data)

        super().__init__(("127.0.0.1", 0), Tunnel)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_downloads_go_through_the_proxy_unless_a_NO_PROXY_range_holds_the_host(
    index, tmp_path, monkeypatch
):
    server = index({f"/{NAME}": [("body", WHEEL)]})
    proxy = ConnectProxy()
    try:
        address = f"http://127.0.0.1:{proxy.server_address[1]}"
        monkeypatch.setenv("HTTPS_PROXY", address)
        monkeypatch.setenv("https_proxy", address)
        assert fetched(tmp_path / "a", server.url(f"/{NAME}")) == WHEEL
        assert proxy.targets == [f"127.0.0.1:{server.server.server_address[1]}"]
        monkeypatch.setenv("NO_PROXY", "example.invalid, 127.0.0.0/8")
        assert fetched(tmp_path / "b", server.url(f"/{NAME}")) == WHEEL
        assert len(proxy.targets) == 1
    finally:
        proxy.shutdown()


def test_a_find_links_folder_named_by_a_file_url_serves_the_wheel(index, tmp_path, monkeypatch):
    folder = tmp_path / "find links"
    folder.mkdir()
    (folder / NAME).write_bytes(WHEEL)
    monkeypatch.setenv("PIP_FIND_LINKS", folder.as_uri())
    # Nobody listens on port 9: only the folder can serve it.
    assert fetched(tmp_path, f"https://127.0.0.1:9/{NAME}") == WHEEL


def test_a_retry_through_the_proxy_tunnels_to_the_same_https_port(index, tmp_path, monkeypatch):
    """urllib's proxy handler rewrites the request it is given: reused for a retry, it once
    tunnelled to port 80 and sent the credentials in the clear."""
    server = index({f"/{NAME}": [("auth", WHEEL)]})
    proxy = ConnectProxy(refusals=2)
    try:
        address = f"http://127.0.0.1:{proxy.server_address[1]}"
        monkeypatch.setenv("HTTPS_PROXY", address)
        monkeypatch.setenv("https_proxy", address)
        url = server.url(f"/{NAME}", userinfo="alice:s3cret@")
        assert fetched(tmp_path, url) == WHEEL
        assert proxy.targets == [f"127.0.0.1:{server.server.server_address[1]}"] * 3
        assert server.requests[-1][1].get("Authorization") == TOKEN
    finally:
        proxy.shutdown()


def test_a_token_in_a_locks_url_is_used_and_shown_nowhere(index, tls, tmp_path):
    """A private index's token in the lock's URL: the wheel is fetched with it, and neither the
    error of another wheel nor the SBOM carries it."""
    wheel = tiny_wheel(tmp_path)
    server = index({f"/{wheel.name}": [("auth", wheel.read_bytes())]})
    url = server.url(f"/{wheel.name}", userinfo="alice:s3cret@")
    out = tmp_path / "out"
    env = {"PIP_CERT": str(tls["ca"]), "HOME": str(tmp_path / "home")}
    result = lambda_zip(
        "package", "--kind", "layer", "--runtime", "python3.12", "--requirement", "tiny==1.0",
        "--lockfile", pylock(tmp_path, wheel, url=url), "-o", out / "layer.zip",
        "--cache-dir", tmp_path / "cache", "--name", "layer", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    sbom = (out / "layer.cdx.json").read_text()
    assert "s3cret" not in sbom and "alice:***@127.0.0.1" in sbom
    assert fetch.shown_url("https://t0ken@host/x.whl") == "https://***@host/x.whl"
