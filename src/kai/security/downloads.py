"""Fetching files from URLs that users name, without letting them reach inside.

A model import from a URL makes the server send a request on a user's
behalf, so a URL is a way to reach what only the server can see: its own
loopback services, the private network, a cloud's metadata endpoint (server-
side request forgery). :func:`download` therefore judges every URL, the
first and each redirect's, before it connects:

- only ``https`` (``http`` when the settings allow it), no credentials in
  the URL, a port that is a number;
- the host is parsed the way a resolver would, so ``2130706433``,
  ``0177.0.0.1``, ``0x7f.1`` and ``127.1`` are all seen as ``127.0.0.1``,
  and IPv6 literals with embedded IPv4 addresses (``::ffff:127.0.0.1``,
  6to4, NAT64, Teredo) are judged by the address inside;
- Kai resolves a name itself and refuses it when any of its addresses is
  loopback, private, link-local, multicast, reserved, unspecified, not
  globally routable or a known metadata endpoint; then it connects to the
  address it checked, with the name kept for TLS (SNI and certificate) and
  the ``Host`` header, so a second DNS answer cannot swap the target.

Redirects are followed by hand, a capped number of times. The body streams
to a temporary file beside the destination and is renamed into place only
when complete. Bytes are counted as they arrive, whatever ``Content-Length``
claims; a declared length over the cap is refused before the body is read.
Kai asks for the identity encoding; a server that compresses anyway is
decoded in bounded steps, counting the decoded bytes, so a gzip bomb stops at
the cap. Connect, read and total timeouts bound the time. A server-chosen
file name (``Content-Disposition``) never names a file: the caller picks the
path, and a sanitised name is kept only as a display hint.

Proxies from the environment are not used: a proxy would resolve the name
itself and undo the address check.
"""

from __future__ import annotations

import email.message
import hashlib
import logging
import os
import re
import secrets
import socket
import ssl
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import IO, Any, NoReturn
from urllib.parse import SplitResult, urljoin, urlsplit

import httpcore

from kai.config import Settings
from kai.errors import DownloadFailed, UnsafeDownload

__all__ = [
    "PUBLIC_ONLY",
    "AddressPolicy",
    "DownloadLimits",
    "DownloadResult",
    "DownloadRule",
    "check_url",
    "download",
]

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
USER_AGENT = "kai-downloader"
MAX_URL_LENGTH = 8192

IPAddress = IPv4Address | IPv6Address

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Metadata endpoints of cloud providers; some are globally routable, so they are named here.
_METADATA_ADDRESSES = frozenset(
    ip_address(text)
    for text in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server
        "192.0.0.192",  # Oracle Cloud (classic)
    )
)
_BLOCKED_NAMES = frozenset(
    {"localhost", "metadata", "metadata.google.internal", "instance-data", "metadata.azure.com"}
)
_NAT64 = IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = IPv6Network("64:ff9b:1::/48")
_UNSAFE_URL_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")
_HOST_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?", re.ASCII)
_DECIMAL = re.compile(r"[0-9]+", re.ASCII)
_OCTAL = re.compile(r"[0-7]*", re.ASCII)
_HEX = re.compile(r"[0-9a-f]*", re.ASCII)
_ENDS_IN_NUMBER = re.compile(r"(?:^|\.)(?:[0-9]+|0x[0-9a-f]*)\.?$", re.ASCII)
_UNSAFE_NAME_CHARACTERS = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


class DownloadRule(StrEnum):
    """Why a download was refused or failed; carried in ``details["rule"]``."""

    MALFORMED_URL = "malformed_url"
    SCHEME = "scheme_not_allowed"
    CREDENTIALS = "credentials_in_url"
    BLOCKED_HOST = "blocked_host"
    BLOCKED_ADDRESS = "blocked_address"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    TOO_LARGE = "too_large"
    UNSUPPORTED_ENCODING = "unsupported_encoding"
    UNRESOLVABLE = "unresolvable_host"
    CONNECTION = "connection_failed"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    TRUNCATED = "truncated"
    PROTOCOL = "protocol_error"


@dataclass(frozen=True)
class AddressPolicy:
    """Which hosts a download may connect to besides public unicast addresses.

    The default, :data:`PUBLIC_ONLY`, trusts nothing more. Tests that serve
    files from their own machine name the exact ``(host, port)`` pairs of
    their servers in ``trusted_origins``, the host spelled as in the URL;
    production code never sets it. A trusted origin skips the address check
    only: scheme, redirects, sizes and timeouts still apply, and a redirect
    to the same address spelled differently or on another port is refused.

    Attributes:
        trusted_origins: Lower-case host and port pairs exempt from the address check.
    """

    trusted_origins: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    def trusts(self, host: str, port: int) -> bool:
        """Whether ``host:port`` is exempt from the address check."""
        return (host, port) in self.trusted_origins


PUBLIC_ONLY = AddressPolicy()


@dataclass(frozen=True)
class DownloadLimits:
    """What a download may cost.

    Attributes:
        max_bytes: Bytes of the file, counted as they arrive (decoded, when compressed).
        max_redirects: Redirects followed before giving up.
        connect_timeout_seconds: Time to open a connection (TLS included), per hop.
        read_timeout_seconds: Time to wait for the next bytes from the server.
        total_timeout_seconds: Time for the whole download, redirects included;
            checked between reads, so it may be overrun by one read timeout.
        allow_http: Whether plain ``http`` URLs are accepted.
    """

    max_bytes: int
    max_redirects: int = 5
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 60.0
    total_timeout_seconds: float = 3600.0
    allow_http: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> DownloadLimits:
        """The limits configured by ``KAI_MAX_DOWNLOAD_*``, ``KAI_DOWNLOAD_*`` and
        ``KAI_ALLOW_HTTP_DOWNLOADS``."""
        return cls(
            max_bytes=settings.max_download_bytes,
            max_redirects=settings.max_download_redirects,
            connect_timeout_seconds=settings.download_connect_timeout_seconds,
            read_timeout_seconds=settings.download_read_timeout_seconds,
            total_timeout_seconds=settings.download_total_timeout_seconds,
            allow_http=settings.allow_http_downloads,
        )


@dataclass(frozen=True)
class DownloadResult:
    """A completed download.

    Attributes:
        path: Where the file now is: the ``dest`` the caller gave.
        sha256: Hex SHA-256 of the bytes written.
        size_bytes: Bytes written.
        final_url: The URL that answered with the file, after redirects.
        content_type: The server's ``Content-Type``, if any; a claim, not a fact.
        suggested_name: The server's file name, reduced to a safe base name;
            for display only, never for a path.
        redirects: The URLs that redirected, in order.
    """

    path: Path
    sha256: str
    size_bytes: int
    final_url: str
    content_type: str | None
    suggested_name: str | None
    redirects: tuple[str, ...]


@dataclass(frozen=True)
class _Target:
    """A judged URL: where to connect and what to ask for."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    address: IPAddress

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == _DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"


def check_url(
    url: str,
    *,
    allow_http: bool = False,
    address_policy: AddressPolicy = PUBLIC_ONLY,
) -> None:
    """Judge a URL as :func:`download` would, without connecting.

    A host name is resolved (a DNS query, no connection to the host), so a
    name that points inside the network is refused here already.

    Raises:
        UnsafeDownload: The URL breaks a rule; ``details["rule"]`` says which.
        DownloadFailed: The host name does not resolve.
    """
    _resolve_target(url, allow_http=allow_http, policy=address_policy)


def download(
    url: str,
    dest: Path,
    *,
    limits: DownloadLimits,
    address_policy: AddressPolicy = PUBLIC_ONLY,
) -> DownloadResult:
    """Stream a URL's file to ``dest``, judging the URL and every redirect first.

    The file appears at ``dest`` (replacing what was there) only once it is
    complete; on any failure nothing is left beside it. ``dest``'s folder
    must exist.

    Args:
        url: An ``https`` URL (``http`` too when ``limits.allow_http``).
        dest: Where to write the file; the caller chooses it, never the server.
        limits: Size, redirect and time limits.
        address_policy: Extra hosts to trust; only tests set it.

    Raises:
        UnsafeDownload: A URL, redirect or the answer breaks a rule (address,
            scheme, redirect count, size, encoding).
        DownloadFailed: The host did not resolve or answer, answered with an
            error status, timed out, or closed before the whole file arrived.
    """
    deadline = time.monotonic() + limits.total_timeout_seconds
    redirects: list[str] = []
    current = url
    while True:
        target = _resolve_target(current, allow_http=limits.allow_http, policy=address_policy)
        location = _fetch(target, dest, limits=limits, deadline=deadline)
        if isinstance(location, DownloadResult):
            return _finished(location, tuple(redirects))
        redirects.append(target.url)
        if len(redirects) > limits.max_redirects:
            _refuse(
                f"{url} redirected more than {limits.max_redirects} times",
                DownloadRule.TOO_MANY_REDIRECTS,
                url=target.url,
            )
        logger.debug("Following redirect", extra={"url": target.url, "location": location})
        current = urljoin(target.url, location)


def _finished(result: DownloadResult, redirects: tuple[str, ...]) -> DownloadResult:
    logger.info(
        "Downloaded %s (%d bytes)",
        result.final_url,
        result.size_bytes,
        extra={"url": result.final_url, "sha256": result.sha256},
    )
    return DownloadResult(
        path=result.path,
        sha256=result.sha256,
        size_bytes=result.size_bytes,
        final_url=result.final_url,
        content_type=result.content_type,
        suggested_name=result.suggested_name,
        redirects=redirects,
    )


# Judging URLs.


def _resolve_target(url: str, *, allow_http: bool, policy: AddressPolicy) -> _Target:
    parts = _split_url(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or (scheme == "http" and not allow_http):
        allowed = "https or http" if allow_http else "https"
        _refuse(
            f"{url} uses {scheme or 'no'} scheme; only {allowed} is allowed", DownloadRule.SCHEME
        )
    if parts.username is not None or parts.password is not None:
        _refuse(f"{url} carries credentials; put none in a download URL", DownloadRule.CREDENTIALS)

    port = _port(parts, url) or _DEFAULT_PORTS[scheme]
    host, literal = _parse_host(parts, url)
    if policy.trusts((parts.hostname or "").lower(), port):
        address = literal or _resolve(host, port, url)[0]
    elif literal is not None:
        _check_address(literal, url)
        address = literal
    else:
        addresses = _resolve(host, port, url)
        for candidate in addresses:
            _check_address(candidate, url)
        address = addresses[0]

    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(url=url, scheme=scheme, host=host, port=port, path=path, address=address)


def _split_url(url: str) -> SplitResult:
    if len(url) > MAX_URL_LENGTH:
        _refuse(f"the URL is longer than {MAX_URL_LENGTH} characters", DownloadRule.MALFORMED_URL)
    if _UNSAFE_URL_CHARACTERS.search(url):
        _refuse(
            f"{url!r} contains spaces, control characters or backslashes",
            DownloadRule.MALFORMED_URL,
        )
    try:
        return urlsplit(url)
    except ValueError as exc:
        _refuse(f"{url!r} is not a valid URL: {exc}", DownloadRule.MALFORMED_URL, cause=exc)


def _port(parts: SplitResult, url: str) -> int | None:
    try:
        port = parts.port
    except ValueError as exc:
        _refuse(f"{url} has an invalid port", DownloadRule.MALFORMED_URL, cause=exc)
    if port == 0:
        _refuse(f"{url} names port 0", DownloadRule.MALFORMED_URL)
    return port


def _parse_host(parts: SplitResult, url: str) -> tuple[str, IPAddress | None]:
    """The host as sent in ``Host`` and, for an address literal, the address it means."""
    host = (parts.hostname or "").lower()
    if not host:
        _refuse(f"{url} names no host", DownloadRule.MALFORMED_URL)
    if "[" in parts.netloc:
        return host, _parse_ipv6_literal(host, url)
    if _ENDS_IN_NUMBER.search(host):
        address = _parse_ipv4_forms(host, url)
        return str(address), address
    return _parse_name(host, url), None


def _parse_ipv6_literal(host: str, url: str) -> IPv6Address:
    if "%" in host:
        _refuse(f"{url} names an IPv6 zone, which only a local link has", DownloadRule.BLOCKED_HOST)
    try:
        return IPv6Address(host)
    except ValueError as exc:
        _refuse(f"{url} has an invalid IPv6 address", DownloadRule.MALFORMED_URL, cause=exc)


def _parse_ipv4_forms(host: str, url: str) -> IPv4Address:
    """Parse an IPv4 host as browsers and ``inet_aton`` do: 1 to 4 parts, each decimal,
    octal (leading ``0``) or hex (``0x``), the last filling the remaining bytes."""
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    numbers = [_parse_ipv4_number(label) for label in labels]
    if len(labels) > 4 or None in numbers:
        _refuse(
            f"{url} has a host that looks like an IPv4 address but is not one",
            DownloadRule.MALFORMED_URL,
        )
    values = [number for number in numbers if number is not None]
    head, last = values[:-1], values[-1]
    if any(value > 255 for value in head) or last >= 256 ** (5 - len(values)):
        _refuse(f"{url} has an IPv4 address out of range", DownloadRule.MALFORMED_URL)
    total = last + sum(value << (8 * (3 - index)) for index, value in enumerate(head))
    return IPv4Address(total)


def _parse_ipv4_number(label: str) -> int | None:
    if label.startswith("0x"):
        digits, base, pattern = label[2:], 16, _HEX
    elif len(label) > 1 and label.startswith("0"):
        digits, base, pattern = label[1:], 8, _OCTAL
    else:
        digits, base, pattern = label, 10, _DECIMAL
    if not pattern.fullmatch(digits):
        return None
    return int(digits, base) if digits else 0


def _parse_name(host: str, url: str) -> str:
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        _refuse(f"{url} has an invalid host name", DownloadRule.MALFORMED_URL, cause=exc)
    ascii_host = ascii_host.rstrip(".")
    if not all(_HOST_LABEL.fullmatch(label) for label in ascii_host.split(".")):
        _refuse(f"{url} has an invalid host name", DownloadRule.MALFORMED_URL)
    if ascii_host in _BLOCKED_NAMES or ascii_host.endswith(".localhost"):
        _refuse(f"{url} names a local or metadata host", DownloadRule.BLOCKED_HOST)
    return ascii_host


def _resolve(host: str, port: int, url: str) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise DownloadFailed(
            f"the host of {url} does not resolve: {exc}",
            details={"rule": DownloadRule.UNRESOLVABLE, "url": url},
        ) from exc
    addresses: list[IPAddress] = []
    for info in infos:
        address = ip_address(str(info[4][0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DownloadFailed(
            f"the host of {url} has no addresses",
            details={"rule": DownloadRule.UNRESOLVABLE, "url": url},
        )
    return addresses


def _check_address(address: IPAddress, url: str) -> None:
    reason = _address_refusal(address)
    if reason is not None:
        _refuse(
            f"{url} points at {address}, {reason}; Kai downloads only from public addresses",
            DownloadRule.BLOCKED_ADDRESS,
            url=url,
            address=str(address),
        )


def _address_refusal(address: IPAddress) -> str | None:
    """Why an address must not be reached, or None when it is public unicast."""
    embedded = _embedded_ipv4(address) if isinstance(address, IPv6Address) else None
    if embedded is not None:
        inner = _address_refusal(embedded)
        if inner is not None:
            return f"which wraps {embedded}, {inner}"
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata endpoint"
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a globally routable address"),
    )
    return next((reason for failed, reason in checks if failed), None)


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or address in _NAT64_LOCAL:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return IPv4Address(int(address))
    return None


# Fetching one hop.


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the address that was checked, whatever name the request carries."""

    def __init__(self, target: _Target) -> None:
        self._target = target
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if (host, port) != (self._target.host, self._target.port):
            raise httpcore.ConnectError(f"refusing to connect to unexpected origin {host}:{port}")
        return self._inner.connect_tcp(
            str(self._target.address),
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("downloads never use Unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _fetch(
    target: _Target, dest: Path, *, limits: DownloadLimits, deadline: float
) -> DownloadResult | str:
    """Ask one URL; the file when it answers with one, or the redirect's location."""
    remaining = _remaining(deadline, target.url)
    timeouts = {
        "connect": min(limits.connect_timeout_seconds, remaining),
        "read": min(limits.read_timeout_seconds, remaining),
        "write": min(limits.read_timeout_seconds, remaining),
        "pool": min(limits.connect_timeout_seconds, remaining),
    }
    url = httpcore.URL(
        scheme=target.scheme.encode(),
        host=target.host.encode(),
        port=target.port,
        target=target.path.encode(),
    )
    headers = [
        (b"Host", target.host_header.encode()),
        (b"User-Agent", USER_AGENT.encode()),
        (b"Accept", b"*/*"),
        (b"Accept-Encoding", b"identity"),
    ]
    pool = httpcore.ConnectionPool(
        ssl_context=ssl.create_default_context(),
        network_backend=_PinnedBackend(target),
        max_connections=1,
        retries=0,
    )
    request = pool.stream("GET", url, headers=headers, extensions={"timeout": timeouts})
    with pool, _translated_errors(target.url), request as answer:
        return _read_answer(answer, target, dest, limits=limits, deadline=deadline)


@contextmanager
def _translated_errors(url: str) -> Iterator[None]:
    """Turn httpcore's exceptions into Kai's, naming the URL."""
    try:
        yield
    except httpcore.TimeoutException as exc:
        _fail(f"{url} timed out ({_describe(exc)})", DownloadRule.TIMEOUT, url, exc)
    except httpcore.RemoteProtocolError as exc:
        if "complete message body" in str(exc) or "incomplete" in str(exc).lower():
            message = f"{url} closed the connection before the whole file arrived ({exc})"
            _fail(message, DownloadRule.TRUNCATED, url, exc)
        _fail(f"{url} broke the HTTP protocol: {_describe(exc)}", DownloadRule.PROTOCOL, url, exc)
    except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
        _fail(f"could not fetch {url}: {_describe(exc)}", DownloadRule.CONNECTION, url, exc)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _read_answer(
    answer: httpcore.Response,
    target: _Target,
    dest: Path,
    *,
    limits: DownloadLimits,
    deadline: float,
) -> DownloadResult | str:
    headers = _Headers(answer.headers)
    if answer.status in _REDIRECT_STATUSES:
        location = headers.get("location")
        if not location:
            _fail(
                f"{target.url} redirected without a Location", DownloadRule.HTTP_STATUS, target.url
            )
        return location
    if answer.status != 200:
        _fail(f"{target.url} answered HTTP {answer.status}", DownloadRule.HTTP_STATUS, target.url)

    _check_declared_length(headers, target.url, limits.max_bytes)
    decoder = _decoder_for(headers.get("content-encoding"), target.url)
    chunks = _counted(answer.iter_stream(), decoder, target.url, limits.max_bytes, deadline)
    sha256, size_bytes = _write_atomically(chunks, dest)
    return DownloadResult(
        path=dest,
        sha256=sha256,
        size_bytes=size_bytes,
        final_url=target.url,
        content_type=headers.get("content-type"),
        suggested_name=_suggested_name(headers.get("content-disposition")),
        redirects=(),
    )


class _Headers:
    """Case-insensitive view of response headers; a repeated header keeps its first value."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._values: dict[str, str] = {}
        for name, value in raw:
            self._values.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    def get(self, name: str) -> str | None:
        return self._values.get(name)


def _check_declared_length(headers: _Headers, url: str, max_bytes: int) -> None:
    declared = headers.get("content-length")
    if declared is None or not declared.strip().isdigit():
        return
    if int(declared) > max_bytes:
        _refuse(
            f"{url} declares {int(declared)} bytes, more than the limit of {max_bytes}",
            DownloadRule.TOO_LARGE,
            url=url,
        )


def _counted(
    raw_chunks: Iterable[bytes],
    decoder: _Decoder,
    url: str,
    max_bytes: int,
    deadline: float,
) -> Iterator[bytes]:
    """The decoded body, refusing it once either the raw or the decoded bytes pass the cap."""
    raw_bytes = decoded_bytes = 0
    for raw in raw_chunks:
        raw_bytes += len(raw)
        for piece in decoder.feed(raw):
            decoded_bytes += len(piece)
            if max(raw_bytes, decoded_bytes) > max_bytes:
                _refuse(
                    f"{url} sent more than the limit of {max_bytes} bytes",
                    DownloadRule.TOO_LARGE,
                    url=url,
                )
            yield piece
        _remaining(deadline, url)
    decoder.finish()


def _remaining(deadline: float, url: str) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        _fail(f"{url} took longer than the download's time limit", DownloadRule.TIMEOUT, url)
    return remaining


class _Decoder:
    """Content decoding in bounded steps: never more than ``CHUNK_BYTES`` out of one call."""

    def __init__(self, wbits: int | None, url: str) -> None:
        self._url = url
        self._inflater = zlib.decompressobj(wbits) if wbits is not None else None

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._inflater is None:
            yield data
            return
        try:
            while data:
                piece = self._inflater.decompress(data, CHUNK_BYTES)
                data = self._inflater.unconsumed_tail
                if piece:
                    yield piece
        except zlib.error as exc:
            _fail(
                f"{self._url} sent a corrupt compressed body", DownloadRule.PROTOCOL, self._url, exc
            )

    def finish(self) -> None:
        if self._inflater is not None and not self._inflater.eof:
            _fail(
                f"{self._url} sent a truncated compressed body", DownloadRule.TRUNCATED, self._url
            )


def _decoder_for(encoding: str | None, url: str) -> _Decoder:
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return _Decoder(None, url)
    if name in ("gzip", "x-gzip"):
        return _Decoder(16 + zlib.MAX_WBITS, url)
    if name == "deflate":
        return _Decoder(zlib.MAX_WBITS, url)
    _refuse(
        f"{url} answered with content encoding {name!r}; Kai accepts identity, gzip or deflate",
        DownloadRule.UNSUPPORTED_ENCODING,
        url=url,
    )


def _write_atomically(chunks: Iterable[bytes], dest: Path) -> tuple[str, int]:
    """Write to a hidden temporary file beside ``dest``, then rename it into place."""
    temporary = dest.parent / f".{dest.name}.{secrets.token_hex(8)}.part"
    digest, size_bytes = hashlib.sha256(), 0
    try:
        with open(temporary, "xb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                digest.update(chunk)
                size_bytes += len(chunk)
            _sync(handle)
        os.replace(temporary, dest)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return digest.hexdigest(), size_bytes


def _sync(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _suggested_name(disposition: str | None) -> str | None:
    """The server's file name cut down to a harmless base name, for display only."""
    if not disposition:
        return None
    message = email.message.Message()
    message["content-disposition"] = disposition
    name = message.get_filename()
    if not name:
        return None
    base = re.split(r"[/\\]", name)[-1]
    base = _UNSAFE_NAME_CHARACTERS.sub("_", base).strip(" .")
    return base[:255] or None


def _refuse(
    message: str,
    rule: DownloadRule,
    *,
    cause: BaseException | None = None,
    **details: str,
) -> NoReturn:
    raise UnsafeDownload(message, details={"rule": rule, **details}) from cause


def _fail(
    message: str, rule: DownloadRule, url: str, cause: BaseException | None = None
) -> NoReturn:
    raise DownloadFailed(message, details={"rule": rule, "url": url}) from cause
