"""The downloader refuses URLs and redirects that reach inside, and bounds size and time.

A real HTTP server on 127.0.0.1 serves every case. It is reachable only
because the tests name its exact origin in an AddressPolicy; the default
policy refuses it, which is tested too.
"""

from __future__ import annotations

import gzip
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpcore
import pytest

from kai.config import Settings
from kai.errors import DownloadFailed, UnsafeDownload
from kai.security.downloads import (
    PUBLIC_ONLY,
    AddressPolicy,
    DownloadLimits,
    DownloadRule,
    check_url,
    download,
)

FILE_BODY = b"weights " * 1000
CAP_BYTES = 64 * 1024
BOMB = gzip.compress(b"\0" * (32 * 1024 * 1024))
GZIPPED = gzip.compress(FILE_BODY)

BAD_HOSTS = [
    ("127.0.0.1:1", "loopback"),
    ("10.0.0.1", "private"),
    ("169.254.169.254", "metadata"),
    ("[::1]", "loopback"),
    ("2130706433", "loopback"),
    ("0177.0.0.1", "loopback"),
    ("0x7f.0.0.1", "loopback"),
    ("127.1", "loopback"),
    ("[::ffff:127.0.0.1]", "loopback"),
    ("[fd00:ec2::254]", "metadata"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("100.64.0.1", "not a globally routable"),
]


class Handler(BaseHTTPRequestHandler):
    """Each path is one behaviour a hostile or broken server might show."""

    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        route = ROUTES.get(parts.path)
        try:
            if route is None:
                self.answer(404, b"not here")
            else:
                route(self, parse_qs(parts.query))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        all_headers = {"Content-Length": str(len(body)), **(headers or {})}
        for name, value in all_headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def file(self, query: dict[str, list[str]]) -> None:
        self.answer(
            200,
            FILE_BODY,
            {
                "Content-Type": "application/octet-stream",
                "Content-Disposition": 'attachment; filename="../../etc/evil.pt"',
            },
        )

    def redirect(self, query: dict[str, list[str]]) -> None:
        self.answer(302, b"", {"Location": query["to"][0]})

    def chain(self, query: dict[str, list[str]]) -> None:
        hops = int(query["hops"][0])
        location = "/file" if hops == 0 else f"/chain?hops={hops - 1}"
        self.answer(302, b"", {"Location": location})

    def host(self, query: dict[str, list[str]]) -> None:
        self.answer(200, self.headers["Host"].encode())

    def unbounded(self, query: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.end_headers()
        for _ in range(3 * CAP_BYTES // 1024):
            self.wfile.write(b"x" * 1024)

    def claims_less(self, query: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "10")
        self.end_headers()
        self.wfile.write(b"x" * (3 * CAP_BYTES))

    def claims_more(self, query: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(FILE_BODY) + 1000))
        self.end_headers()
        self.wfile.write(FILE_BODY)

    def claims_huge(self, query: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(10 * CAP_BYTES))
        self.end_headers()
        time.sleep(5)

    def gzip_bomb(self, query: dict[str, list[str]]) -> None:
        self.answer(200, BOMB, {"Content-Encoding": "gzip"})

    def gzipped(self, query: dict[str, list[str]]) -> None:
        self.answer(200, GZIPPED, {"Content-Encoding": "gzip"})

    def brotli(self, query: dict[str, list[str]]) -> None:
        self.answer(200, b"\x0b\x02\x80hello\x03", {"Content-Encoding": "br"})

    def slow(self, query: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.flush()
        time.sleep(3)
        self.wfile.write(b"x" * 100)

    def drip(self, query: dict[str, list[str]]) -> None:
        self.send_response(200)
        self.end_headers()
        for _ in range(50):
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.1)

    def missing(self, query: dict[str, list[str]]) -> None:
        self.answer(404, b"no such model")


ROUTES: dict[str, Callable[[Handler, dict[str, list[str]]], None]] = {
    f"/{name.replace('_', '-')}": method
    for name, method in vars(Handler).items()
    if callable(method) and not name.startswith(("_", "do_", "log_", "answer"))
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def policy(server: str) -> AddressPolicy:
    port = urlsplit(server).port
    assert port is not None
    return AddressPolicy(trusted_origins=frozenset({("127.0.0.1", port)}))


@pytest.fixture
def limits() -> DownloadLimits:
    return DownloadLimits(
        max_bytes=CAP_BYTES,
        max_redirects=3,
        connect_timeout_seconds=2.0,
        read_timeout_seconds=2.0,
        total_timeout_seconds=20.0,
        allow_http=True,
    )


@pytest.fixture
def dest_dir(tmp_path: Path) -> Path:
    """The only folder a download may write to; tests check it holds nothing else."""
    path = tmp_path / "downloads"
    path.mkdir()
    return path


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Records any TCP connection attempt instead of making it."""
    attempts: list[tuple[str, int]] = []

    def refuse(self: object, host: str, port: int, *args: object, **kwargs: object) -> None:
        attempts.append((host, port))
        raise httpcore.ConnectError("connection attempted")

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", refuse)
    return attempts


def assert_nothing_written(dest_dir: Path) -> None:
    assert list(dest_dir.iterdir()) == []


def test_a_normal_file_downloads_with_its_hash_and_metadata(
    server: str, policy: AddressPolicy, limits: DownloadLimits, dest_dir: Path
) -> None:
    dest = dest_dir / "model.bin"
    result = download(f"{server}/file", dest, limits=limits, address_policy=policy)

    assert dest.read_bytes() == FILE_BODY
    assert result.path == dest
    assert result.sha256 == hashlib.sha256(FILE_BODY).hexdigest()
    assert result.size_bytes == len(FILE_BODY)
    assert result.final_url == f"{server}/file"
    assert result.content_type == "application/octet-stream"
    assert result.redirects == ()
    assert [path.name for path in dest_dir.iterdir()] == ["model.bin"]


def test_a_server_file_name_with_dot_dot_is_only_a_display_hint(
    server: str, policy: AddressPolicy, limits: DownloadLimits, dest_dir: Path
) -> None:
    dest = dest_dir / "chosen-by-kai"
    result = download(f"{server}/file", dest, limits=limits, address_policy=policy)

    assert result.suggested_name == "evil.pt"
    assert [path.name for path in dest_dir.iterdir()] == ["chosen-by-kai"]
    assert not (dest_dir.parent / "etc").exists()


def test_redirects_are_followed_up_to_the_cap(
    server: str, policy: AddressPolicy, limits: DownloadLimits, dest_dir: Path
) -> None:
    result = download(
        f"{server}/chain?hops=2", dest_dir / "f", limits=limits, address_policy=policy
    )

    assert result.final_url == f"{server}/file"
    assert len(result.redirects) == 3

    with pytest.raises(UnsafeDownload, match="redirected more than 3 times") as caught:
        download(f"{server}/chain?hops=5", dest_dir / "g", limits=limits, address_policy=policy)
    assert caught.value.details["rule"] == DownloadRule.TOO_MANY_REDIRECTS
    assert list(dest_dir.iterdir()) == [dest_dir / "f"]


@pytest.mark.parametrize(("host", "reason"), BAD_HOSTS)
def test_a_redirect_to_an_inside_address_is_refused(
    server: str,
    policy: AddressPolicy,
    limits: DownloadLimits,
    dest_dir: Path,
    host: str,
    reason: str,
) -> None:
    port = urlsplit(server).port
    # The same port as the trusted server, except for 127.0.0.1 itself, which names another.
    netloc = host if host.startswith("127.0.0.1:") else f"{host}:{port}"
    target = f"http://{netloc}/file"

    with pytest.raises(UnsafeDownload, match=reason) as caught:
        download(
            f"{server}/redirect?to={target}", dest_dir / "f", limits=limits, address_policy=policy
        )

    assert caught.value.details["rule"] == DownloadRule.BLOCKED_ADDRESS
    assert_nothing_written(dest_dir)


def test_a_redirect_to_localhost_by_name_is_refused(
    server: str, policy: AddressPolicy, limits: DownloadLimits, dest_dir: Path
) -> None:
    port = urlsplit(server).port
    with pytest.raises(UnsafeDownload, match="local or metadata host"):
        download(
            f"{server}/redirect?to=http://localhost:{port}/file",
            dest_dir / "f",
            limits=limits,
            address_policy=policy,
        )
    assert_nothing_written(dest_dir)


@pytest.mark.parametrize(("host", "reason"), BAD_HOSTS)
def test_a_direct_url_to_an_inside_address_is_refused_before_connecting(
    no_connections: list[tuple[str, int]], dest_dir: Path, host: str, reason: str
) -> None:
    url = f"https://{host}/latest/meta-data/"
    limits = DownloadLimits(max_bytes=CAP_BYTES)

    with pytest.raises(UnsafeDownload, match=reason):
        check_url(url)
    with pytest.raises(UnsafeDownload, match=reason):
        download(url, dest_dir / "f", limits=limits)

    assert no_connections == []
    assert_nothing_written(dest_dir)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("ftp://example.com/model.bin", DownloadRule.SCHEME),
        ("file:///etc/passwd", DownloadRule.SCHEME),
        ("http://example.com/model.bin", DownloadRule.SCHEME),
        ("https://user:secret@example.com/model.bin", DownloadRule.CREDENTIALS),
        ("https://example.com:99999/", DownloadRule.MALFORMED_URL),
        ("https://exa mple.com/", DownloadRule.MALFORMED_URL),
        ("https://example.com\\@127.0.0.1/", DownloadRule.MALFORMED_URL),
        ("https://1.2.3.4.5/", DownloadRule.MALFORMED_URL),
        ("https://08.0.0.1/", DownloadRule.MALFORMED_URL),
        ("https://[fe80::1%25eth0]/", DownloadRule.BLOCKED_HOST),
        ("https://metadata.google.internal/computeMetadata/v1/", DownloadRule.BLOCKED_HOST),
        ("https://api.localhost/", DownloadRule.BLOCKED_HOST),
    ],
)
def test_malformed_and_forbidden_urls_are_refused_before_connecting(
    no_connections: list[tuple[str, int]], url: str, rule: DownloadRule
) -> None:
    with pytest.raises(UnsafeDownload) as caught:
        check_url(url)

    assert caught.value.details["rule"] == rule
    assert no_connections == []


def test_the_default_policy_refuses_the_test_server_and_plain_http(
    server: str, dest_dir: Path, no_connections: list[tuple[str, int]]
) -> None:
    limits = DownloadLimits(max_bytes=CAP_BYTES, allow_http=True)
    with pytest.raises(UnsafeDownload, match="loopback"):
        download(f"{server}/file", dest_dir / "f", limits=limits)
    with pytest.raises(UnsafeDownload, match="only https is allowed"):
        download(f"{server}/file", dest_dir / "f", limits=DownloadLimits(max_bytes=CAP_BYTES))

    assert PUBLIC_ONLY.trusted_origins == frozenset()
    assert no_connections == []
    assert_nothing_written(dest_dir)


def test_limits_come_from_settings_with_http_off_by_default() -> None:
    limits = DownloadLimits.from_settings(Settings())

    assert limits.allow_http is False
    assert limits.max_bytes == Settings().max_download_bytes
    assert limits.total_timeout_seconds >= limits.read_timeout_seconds > 0


def test_the_resolved_address_is_pinned_and_the_name_kept_in_host(
    server: str, limits: DownloadLimits, dest_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One DNS answer per hop: a second, rebinding answer would point elsewhere."""
    port = urlsplit(server).port
    assert port is not None
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: str, *args: object, **kwargs: object) -> object:
        if host != "files.kai.test":
            return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "10.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    policy = AddressPolicy(trusted_origins=frozenset({("files.kai.test", port)}))
    result = download(
        f"http://files.kai.test:{port}/host", dest_dir / "f", limits=limits, address_policy=policy
    )

    assert lookups == ["files.kai.test"]
    assert (dest_dir / "f").read_bytes() == f"files.kai.test:{port}".encode()
    assert result.final_url == f"http://files.kai.test:{port}/host"


def test_a_name_that_resolves_inside_is_refused(
    monkeypatch: pytest.MonkeyPatch, no_connections: list[tuple[str, int]]
) -> None:
    def inside(host: str, port: int, *args: object, **kwargs: object) -> object:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", inside)
    with pytest.raises(UnsafeDownload, match=r"10\.1\.2\.3, a private address"):
        check_url("https://mixed.example.com/model.bin")
    assert no_connections == []


def test_a_body_without_length_is_counted_and_stopped_at_the_cap(
    server: str, policy: AddressPolicy, limits: DownloadLimits, dest_dir: Path
) -> None:
    with pytest.raises(UnsafeDownload, match=f"more than the limit of {CAP_BYTES} bytes") as caught:
        download(f"{server}/unbounded", dest_dir / "f", limits=limits, address_policy=policy)

    assert caught.value.details["rule"] == DownloadRule.TOO_LARGE
    assert_nothing_written(dest_dir)


def test_a_length_claimed_too_small_never_lets_more_bytes_in(
    server: str, policy: AddressPolicy, limits: DownloadLimits, dest_dir: Path
) -> None:
    """HTTP framing ends the body at the declared length; the extra bytes are never read."""
    result = download(f"{server}/claims-less", dest_dir / "f", limits=limits, address_policy=policy)

    assert result.size_bytes == 10
    assert (dest_dir / "f").read_bytes() == b"x" * 10


def test_a_length_claimed_too_large_is_a_truncated_download(
    server: str, policy: AddressPolicy, limits: DownloadLimits, dest_dir: Path
) -> None:
    with pytest.raises(DownloadFailed, match="before the whole file arrived") as caught:
        download(f"{server}/claims-more", dest_dir / "f", limits=limits, address_policy=policy)

    assert caught.value.details["rule"] == DownloadRule.TRUNCATED
    assert_nothing_written(dest_dir)


def test_a_declared_length_over_the_cap_is_refused_before_the_body(
    server: str, policy: AddressPolicy, limits: DownloadLimits, dest_dir: Path
) -> None:
    """The server never sends a body; reading one would end in a timeout instead."""
    with pytest.raises(UnsafeDownload, match="declares") as caught:
        download(f"{server}/claims-huge", dest_dir / "f", limits=limits, address_policy=policy)

    assert caught.value.details["rule"] == DownloadRule.TOO_LARGE
    assert_nothing_written(dest_dir)


def test_a_gzip_bomb_is_stopped_by_counting_decoded_bytes(
    server: str, policy: AddressPolicy, limits: DownloadLimits, dest_dir: Path
) -> None:
    assert len(BOMB) < CAP_BYTES

    with pytest.raises(UnsafeDownload, match="more than the limit") as caught:
        download(f"{server}/gzip-bomb", dest_dir / "f", limits=limits, address_policy=policy)

    assert caught.value.details["rule"] == DownloadRule.TOO_LARGE
    assert_nothing_written(dest_dir)


def test_a_gzip_body_sent_anyway_is_decoded_and_hashed_decoded(
    server: str, policy: AddressPolicy, limits: DownloadLimits, dest_dir: Path
) -> None:
    result = download(f"{server}/gzipped", dest_dir / "f", limits=limits, address_policy=policy)

    assert (dest_dir / "f").read_bytes() == FILE_BODY
    assert result.sha256 == hashlib.sha256(FILE_BODY).hexdigest()


def test_an_unknown_content_encoding_is_refused(
    server: str, policy: AddressPolicy, limits: DownloadLimits, dest_dir: Path
) -> None:
    with pytest.raises(UnsafeDownload, match="content encoding 'br'"):
        download(f"{server}/brotli", dest_dir / "f", limits=limits, address_policy=policy)
    assert_nothing_written(dest_dir)


def test_a_slow_server_hits_the_read_timeout(
    server: str, policy: AddressPolicy, dest_dir: Path
) -> None:
    limits = DownloadLimits(max_bytes=CAP_BYTES, read_timeout_seconds=0.5, allow_http=True)

    with pytest.raises(DownloadFailed, match="timed out") as caught:
        download(f"{server}/slow", dest_dir / "f", limits=limits, address_policy=policy)

    assert caught.value.details["rule"] == DownloadRule.TIMEOUT
    assert_nothing_written(dest_dir)


def test_a_dripping_server_hits_the_total_timeout(
    server: str, policy: AddressPolicy, dest_dir: Path
) -> None:
    limits = DownloadLimits(
        max_bytes=CAP_BYTES, read_timeout_seconds=2.0, total_timeout_seconds=1.0, allow_http=True
    )

    with pytest.raises(DownloadFailed, match="time limit") as caught:
        download(f"{server}/drip", dest_dir / "f", limits=limits, address_policy=policy)

    assert caught.value.details["rule"] == DownloadRule.TIMEOUT
    assert_nothing_written(dest_dir)


def test_an_error_status_fails_and_keeps_an_existing_file(
    server: str, policy: AddressPolicy, limits: DownloadLimits, dest_dir: Path
) -> None:
    dest = dest_dir / "model.bin"
    dest.write_bytes(b"previous")

    with pytest.raises(DownloadFailed, match="HTTP 404") as caught:
        download(f"{server}/missing", dest, limits=limits, address_policy=policy)

    assert caught.value.details["rule"] == DownloadRule.HTTP_STATUS
    assert dest.read_bytes() == b"previous"
    assert list(dest_dir.iterdir()) == [dest]


def test_a_closed_port_fails_with_a_connection_error(
    policy: AddressPolicy, limits: DownloadLimits, dest_dir: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = AddressPolicy(trusted_origins=frozenset({("127.0.0.1", port)}))

    with pytest.raises(DownloadFailed, match="could not fetch") as caught:
        download(f"http://127.0.0.1:{port}/", dest_dir / "f", limits=limits, address_policy=closed)

    assert caught.value.details["rule"] == DownloadRule.CONNECTION
    assert_nothing_written(dest_dir)
