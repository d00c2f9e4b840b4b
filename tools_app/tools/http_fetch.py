"""http_fetch: an HTTP(S) request to a public address, with limits on size, time and redirects.

Against server-side request forgery the host is resolved here, every address it resolves to
must be public (not private, loopback, link-local, cloud metadata, unspecified, multicast,
reserved) unless ``CLAWSITE_HTTP_ALLOW_PRIVATE``, and the connection goes to the address that
was checked (the Host header and TLS SNI keep the name), so a second DNS answer cannot
rebind it. Redirects are followed by hand, each hop checked the same way. Proxies from the
environment are ignored: a proxy would connect where we did not check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import zlib
from typing import Any, Literal

import httpx
from django.conf import settings
from pydantic import Field, field_validator

from .. import breaker
from ..errors import ToolError
from ..llm_pool import retry_after_seconds
from ..outbound import retryable_http_failures
from ..registry import Tool, ToolArgs, ToolContext, register

MAX_REDIRECTS = 5
NAT64 = ipaddress.ip_network("64:ff9b::/96")
CREDENTIAL_HEADERS = {"authorization", "cookie", "proxy-authorization"}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class HttpFetchArgs(ToolArgs):
    url: str = Field(max_length=8192)
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict, max_length=100)
    timeout: float = Field(10.0, gt=0, le=300)
    max_bytes: int = Field(1_000_000, ge=0, le=50_000_000)

    @field_validator("url")
    @classmethod
    def http_url(cls, url: str) -> str:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ValueError(f"invalid URL: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("the URL must be http:// or https:// with a host")
        return url

    @field_validator("headers")
    @classmethod
    def no_host_header(cls, headers: dict[str, str]) -> dict[str, str]:
        if any(name.lower() == "host" for name in headers):
            raise ValueError("the Host header comes from the URL")
        return headers


def address_allowed(address: IPAddress) -> bool:
    """Only globally routable unicast addresses; IPv4 inside IPv6 (mapped, NAT64) is unwrapped."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address in NAT64:
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


async def checked_address(host: str, port: int) -> str:
    """The address to connect to for ``host``; ToolError ``address_not_allowed`` when any
    address the name resolves to is not public (a mixed answer could be raced)."""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise ToolError(
                "dns_error", f"cannot resolve {host!r}: {exc}", retryable=True
            ) from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not addresses:
        raise ToolError("dns_error", f"{host!r} has no address", retryable=True)
    if not settings.CLAWSITE_HTTP_ALLOW_PRIVATE:
        refused = [str(a) for a in addresses if not address_allowed(a)]
        if refused:
            raise ToolError(
                "address_not_allowed",
                f"{host!r} resolves to a non-public address ({', '.join(refused)}); refused",
            )
    return str(addresses[0])


class _Inflater:
    """One ``Content-Encoding`` (gzip or deflate) undone with a cap on what each call gives
    out: zlib's ``max_length`` keeps the rest of the input for later, so a small compressed
    chunk (a gzip bomb expands ~1000x) never becomes more than ``room`` bytes at once."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        # gzip: its header; deflate: zlib's (what the RFC says), raw deflate tried if not.
        self.inflate = zlib.decompressobj(zlib.MAX_WBITS | 16 if encoding == "gzip" else 15)
        self.started = False

    def feed(self, data: bytes, room: int) -> bytes:
        out = bytearray()
        while data and len(out) < room:
            try:
                out += self.inflate.decompress(data, room - len(out))
            except zlib.error:
                if self.encoding == "deflate" and not self.started:
                    self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                    self.started = True
                    continue
                raise ToolError("http_error", f"the {self.encoding} body is corrupt") from None
            self.started = True
            data = self.inflate.unconsumed_tail
        return bytes(out)


def _inflaters(content_encoding: str) -> list[_Inflater] | None:
    """The decoders for a ``Content-Encoding`` list, outermost first; None when one of them is
    not gzip or deflate (the body is then returned as sent, like httpx does)."""
    names = [n.strip().lower() for n in content_encoding.split(",") if n.strip()]
    names = [n for n in names if n != "identity"]
    if any(name not in ("gzip", "x-gzip", "deflate") for name in names):
        return None
    return [_Inflater("deflate" if n == "deflate" else "gzip") for n in reversed(names)]


async def _read_body(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    """At most ``max_bytes`` of the body, decompressed as it streams: neither the compressed
    body nor its expansion is ever held beyond the cap (plus one network chunk)."""
    inflaters = _inflaters(response.headers.get("content-encoding", "")) or []
    body = bytearray()
    async for chunk in response.aiter_raw():
        for inflater in inflaters:
            chunk = inflater.feed(chunk, max_bytes + 1 - len(body))
        body += chunk
        if len(body) > max_bytes:
            return bytes(body[:max_bytes]), True
    return bytes(body), False


async def _send_through_breaker(
    client: httpx.AsyncClient, request: httpx.Request, host: str
) -> httpx.Response:
    """Send unless ``host``'s (host:port) circuit breaker is open (tools_app.breaker): connection failures,
    5xx and 429 count against it; an open breaker fails the attempt as retryable at once."""
    name = f"host:{host}"
    allowed, wait = await breaker.allow(name)
    if not allowed:
        raise ToolError(
            "circuit_open",
            f"{host} keeps failing; its circuit breaker is open (next try in {wait:.0f} s)",
            retryable=True,
        )
    try:
        response = await client.send(request, stream=True)
    except (httpx.TransportError, TimeoutError):
        await breaker.record(name, False)
        raise
    failed = response.status_code >= 500 or response.status_code == 429
    retry_after = retry_after_seconds(response.headers.get("Retry-After")) if failed else 0.0
    await breaker.record(name, not failed, retry_after)
    return response


async def fetch(args: HttpFetchArgs, time_limit: float) -> dict[str, Any]:
    method = args.method
    headers = dict(args.headers)
    url = httpx.URL(args.url)
    async with httpx.AsyncClient(
        timeout=time_limit, follow_redirects=False, trust_env=False
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            port = url.port or (443 if url.scheme == "https" else 80)
            address = await checked_address(url.host, port)
            extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
            request = client.build_request(
                method,
                url.copy_with(host=address),
                headers={**headers, "Host": url.netloc.decode("ascii")},
                extensions=extensions,
            )
            response = await _send_through_breaker(client, request, f"{url.host}:{port}")
            try:
                location = response.headers.get("location")
                if response.is_redirect and location:
                    following = url.join(location)
                    if following.scheme not in ("http", "https"):
                        raise ToolError(
                            "invalid_redirect", f"redirect to {following.scheme!r} refused"
                        )
                    if (following.scheme, following.host, following.port) != (
                        url.scheme,
                        url.host,
                        url.port,
                    ):
                        headers = {
                            k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS
                        }
                    if response.status_code == 303 or (
                        response.status_code in (301, 302) and method == "POST"
                    ):
                        method = "GET"
                    url = following
                    continue
                body, truncated = await _read_body(response, args.max_bytes)
            finally:
                await response.aclose()
            return {
                "status": response.status_code,
                "url": str(url),
                "headers": {
                    name: ", ".join(response.headers.get_list(name)) for name in response.headers
                },
                "body": body.decode(response.encoding or "utf-8", "replace"),
                "truncated": truncated,
            }
    raise ToolError("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")


@register
class HttpFetch(Tool):
    name = "http_fetch"
    open_world = True
    description = (
        "Fetch a URL over HTTP(S) from a public address (private, loopback, link-local and "
        "metadata addresses refused unless CLAWSITE_HTTP_ALLOW_PRIVATE); size and time limited."
    )
    Args = HttpFetchArgs

    async def run(self, args: HttpFetchArgs, ctx: ToolContext) -> dict[str, Any]:
        timeout = ctx.limit(args.timeout) or args.timeout
        try:
            with retryable_http_failures(f"no complete answer within {timeout:g} s"):
                return await asyncio.wait_for(fetch(args, timeout), timeout)
        except (httpx.InvalidURL, httpx.HTTPError) as exc:
            raise ToolError("http_error", f"{type(exc).__name__}: {exc}") from None
