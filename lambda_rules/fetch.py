"""Fetch locked wheels into a content-addressed cache, each checked against its lock's sha256
before anything reads it.

Standard library only (urllib): it runs in the Pants rules' sandbox as well as in `lambda-zip`.
urllib already honours `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`; this adds what a corporate network
needs beyond that: a CA bundle (`CA_BUNDLE_VARIABLES`), `NO_PROXY`'s CIDR ranges, credentials for
private indexes (in the URL, or `~/.netrc` / `$NETRC`; kept from other hosts a redirect leads
to), `file://` URLs, find-links folders that may already hold a wheel, and bounded retries of
transient failures (a body cut short among them). A wheel in the cache is found by its sha256
alone, so a warm cache needs no network, and two runs sharing one cache both write the same bytes
(atomically).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import netrc
import os
import shutil
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import unquote, urlsplit, urlunsplit

from lambda_rules.errors import LambdaRulesError

# Where a CA bundle may be configured, first found wins: ours, then pip's and requests'.
# `SSL_CERT_FILE` is last because OpenSSL reads it anyway.
CA_BUNDLE_VARIABLES = ("LAMBDA_ZIP_CA_CERTS", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
# pip's find-links setting, honoured as well: a wheel found there is checked like a download.
FIND_LINKS_VARIABLE = "PIP_FIND_LINKS"
# Transient failures (connection errors, timeouts, HTTP 5xx and 429) are tried this many times,
# waiting RETRY_BACKOFF_SECONDS * 2**attempt between tries; pip retries 5 times, uv 3.
ATTEMPTS = 3
RETRY_BACKOFF_SECONDS = 0.5
TIMEOUT_SECONDS = 60
# Wheels downloaded at once: fetching is network-bound, not CPU-bound.
PARALLEL_FETCHES = 8
_CHUNK = 1 << 20


class FetchError(LambdaRulesError):
    """A wheel could not be fetched, or its bytes are not the ones the lock pins."""


@dataclass(frozen=True)
class Wanted:
    """A wheel to fetch: where from, and the sha256 its bytes must have."""

    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return Path(unquote(urlsplit(self.url).path)).name


class WheelCache:
    """Wheels by sha256 under `root/sha256/<2 hex>/<sha256>/<file name>` (an installer reads the
    name): a pinned wheel's bytes never change, so the file serves every lock, function and
    repository that pins it."""

    def __init__(self, root: Path, find_links: Sequence[Path] = ()) -> None:
        self.root = root
        # Folders only, as paths or file:// URLs; an index page's links are not followed.
        configured = os.environ.get(FIND_LINKS_VARIABLE, "").split()
        folders = [unquote(urlsplit(p).path) if p.startswith("file:") else p for p in configured]
        self.find_links = [*find_links, *(Path(p) for p in folders if "://" not in p)]

    def path(self, wheel: Wanted) -> Path:
        return self.root / "sha256" / wheel.sha256[:2] / wheel.sha256 / wheel.filename

    def fetch_all(self, wanted: Iterable[Wanted]) -> dict[str, Path]:
        """Each wheel's sha256 -> its checked file in the cache, fetched in parallel."""
        unique = {w.sha256: w for w in wanted}
        with ThreadPoolExecutor(max_workers=PARALLEL_FETCHES) as pool:
            paths = list(pool.map(self.fetch, unique.values()))
        return dict(zip(unique, paths))

    def fetch(self, wheel: Wanted) -> Path:
        target = self.path(wheel)
        if target.is_file() and _sha256(target) == wheel.sha256:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".fetch-", delete=False) as f:
            partial = Path(f.name)
        try:
            self._download(wheel, partial)
            actual = _sha256(partial)
            if actual != wheel.sha256:
                raise FetchError(
                    f"{shown_url(wheel.url)}: its sha256 is {actual}, but the lock pins "
                    f"{wheel.sha256}; the file changed since the lock was made, or something "
                    "between you and the index altered it: check the source, then lock again"
                )
            os.chmod(partial, 0o644)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    def _download(self, wheel: Wanted, into: Path) -> None:
        for folder in self.find_links:
            candidate = folder / wheel.filename
            if candidate.is_file() and _sha256(candidate) == wheel.sha256:
                shutil.copyfile(candidate, into)
                return
        if urlsplit(wheel.url).scheme == "file":
            _copy_file_url(wheel.url, into)
            return
        for attempt in range(ATTEMPTS):
            # A new request each time: urllib's proxy handler rewrites the one it is given.
            request = _request(wheel.url)
            try:
                opener = _opener(urlsplit(request.full_url).hostname or "")
                with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
                    _copy_whole(response, into)
                return
            except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
                if attempt + 1 == ATTEMPTS or not _transient(error):
                    raise FetchError(
                        f"{shown_url(wheel.url)}: cannot download it ({_reason(error)}); check the "
                        "network, `HTTPS_PROXY`/`NO_PROXY`, the CA bundle (`SSL_CERT_FILE`/"
                        "`PIP_CERT`) and ~/.netrc, or fill the wheel cache where the network "
                        "reaches"
                    ) from None
                time.sleep(RETRY_BACKOFF_SECONDS * 2**attempt)


class _CutShort(OSError):
    """The connection ended before the body's announced length: transient, tried again."""


def _copy_whole(response: http.client.HTTPResponse, into: Path) -> None:
    """The body into `into`, checked against its Content-Length (urllib does not check it)."""
    with open(into, "wb") as out:
        shutil.copyfileobj(response, out, _CHUNK)
        received = out.tell()
    announced = response.headers.get("Content-Length", "").split(",")[0].strip()
    if announced.isdigit() and not response.headers.get("Content-Encoding"):
        if received < int(announced):
            raise _CutShort(f"the connection closed after {received} of {announced} bytes")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_file_url(url: str, into: Path) -> None:
    source = Path(unquote(urlsplit(url).path))
    try:
        shutil.copyfile(source, into)
    except OSError as error:
        raise FetchError(f"{url}: cannot read it ({error.strerror})") from None


def _transient(error: BaseException) -> bool:
    if isinstance(error, urllib.error.HTTPError):
        return error.code >= 500 or error.code == 429
    # An untrusted certificate stays untrusted: tell at once.
    return not isinstance(getattr(error, "reason", error), ssl.SSLCertVerificationError)


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    return str(getattr(error, "reason", None) or error)


def _ssl_context() -> ssl.SSLContext:
    for variable in CA_BUNDLE_VARIABLES:
        bundle = os.environ.get(variable)
        if bundle and os.path.isfile(bundle):
            return ssl.create_default_context(cafile=bundle)
    return ssl.create_default_context()


def _opener(host: str) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.HTTPSHandler(context=_ssl_context()),
        _Redirects(),
    ]
    if _bypasses_proxy(host):
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


def _bypasses_proxy(host: str) -> bool:
    """`NO_PROXY`'s CIDR entries (`10.0.0.0/8`), as requests and curl read them; urllib itself
    matches only names, suffixes and `*`."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    for entry in (os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or "").split(","):
        try:
            if "/" in entry and address in ipaddress.ip_network(entry.strip(), strict=False):
                return True
        except ValueError:
            continue
    return False


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Credentials follow a redirect only to the same host over HTTPS, as pip and uv do; the
    new host gets its own from ~/.netrc (an index that redirects to a CDN or S3)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        old, target = urlsplit(req.full_url), urlsplit(newurl)
        if new is not None and (old.hostname, old.scheme) != (target.hostname, target.scheme):
            new.remove_header("Authorization")
            _authorize(new, _netrc_credentials(target.hostname))
        return new


def _request(url: str) -> urllib.request.Request:
    """`url` with its credentials: those in the URL (`https://user:token@host/...`), else those
    ~/.netrc (or `$NETRC`) holds for its host, as pip and uv send them. Only over HTTPS: never
    in the clear."""
    parts = urlsplit(url)
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    request = urllib.request.Request(bare, headers={"User-Agent": "lambda-zip"})
    credentials: tuple[str, str] | None
    if parts.username is not None:
        credentials = (unquote(parts.username), unquote(parts.password or ""))
    else:
        credentials = _netrc_credentials(parts.hostname)
    _authorize(request, credentials)
    return request


def _netrc_credentials(host: str | None) -> tuple[str, str] | None:
    # Named explicitly, the file is read whatever its mode, as requests (pip) and curl read it;
    # Python's netrc would skip a ~/.netrc that others may read, silently.
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        found = netrc.netrc(path).authenticators(host or "")
    except (OSError, netrc.NetrcParseError):
        return None
    return (found[0], found[2] or "") if found else None


def _authorize(request: urllib.request.Request, credentials: tuple[str, str] | None) -> None:
    if credentials and urlsplit(request.full_url).scheme == "https":
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")


def shown_url(url: str) -> str:
    """`url` as errors and SBOMs show it: without the password or token it may carry (a name
    alone before `@` is a token)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url
    user = "***" if parts.password is None else f"{parts.username}:***"
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.netloc.rpartition('@')[2]}"))
