"""Fetching a URL a user sent without letting it reach inside the network (SSRF).

Both services fetch URLs their callers name: the trainer's http(s) dataset URIs, the
inference service's ``image_url``. A URL is only as safe as the address it is fetched
from, so every hop goes through the same steps:

1. the scheme and host are checked without the network (``check_url``, also run at
   submit time so a bad URI is refused at once);
2. the host is resolved once and every address it resolves to is checked
   (``address_policy.address_refusal``): loopback, private, shared (CGNAT) addresses are refused unless
   the service's setting allows private networks; link-local, cloud metadata, multicast,
   reserved and unspecified addresses are refused whatever the setting;
3. the connection goes to one of those checked addresses, never to the name: the URL is
   rewritten to the IP, the Host header keeps the name, and TLS sends the name as SNI and
   verifies the certificate against it (httpcore's ``sni_hostname`` request extension).
   A second resolution, which a DNS-rebinding attacker would answer differently, never
   happens;
4. redirects are followed by hand (at most ``FetchPolicy.max_redirects``), each hop
   checked and pinned as above;
5. the body is read through ``read_capped``, which stops once it passes the byte cap.

Proxies from the environment are not used: a proxy resolves the name itself, which
would undo the pinning. ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` are still honoured, so a
deployment's private CA works.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import BinaryIO

import httpx

from ocrtune_shared.address_policy import IPAddress, address_refusal, parse_ip

Resolver = Callable[[str, int], Sequence[IPAddress]]
"""host, port -> the addresses to check and connect to (the system resolver by default)."""
AsyncResolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK_BYTES = 1 << 16


class FetchFailure(str, Enum):
    refused = "refused"
    """The URL or an address it resolves to is not allowed by the policy."""
    unreachable = "unreachable"
    """The name does not resolve, no address accepts a connection, or the connection fails."""
    http_status = "http_status"
    """The server answered something other than 2xx (or a redirect with nowhere to go)."""
    too_many_redirects = "too_many_redirects"
    too_large = "too_large"


class FetchError(Exception):
    """Why a fetch failed: ``failure`` says which kind, ``message`` says it in words, naming the URL."""

    def __init__(self, failure: FetchFailure, message: str, url: str, status: int | None = None) -> None:
        # url: the URL the caller asked for; the message names the hop that failed, when a redirect led there.
        super().__init__(message)
        self.failure = failure
        self.message = message
        self.url = url
        self.status = status


@dataclass(frozen=True)
class FetchPolicy:
    schemes: frozenset[str] = frozenset({"https"})
    allow_private: bool = False
    """Allow loopback, private and shared addresses (metadata and link-local stay refused)."""
    allow_private_setting: str = ""
    """The setting that sets ``allow_private``, named in refusals so an operator knows what to change."""
    max_redirects: int = 5
    timeout_s: float = 30.0
    connect_timeout_s: float = 10.0


# --------------------------------------------------------------------------- URLs


def check_url(url: str, policy: FetchPolicy, *, asked: str | None = None) -> httpx.URL:
    """``url`` parsed, if its scheme and host pass the policy; names are checked once resolved.

    ``asked`` is the URL the caller named, when ``url`` is a redirect hop from it (errors carry it).
    """
    asked = asked or url
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchError(FetchFailure.refused, f"not a usable URL: {exc}", asked) from None
    if parsed.scheme not in policy.schemes:
        allowed = " or ".join(f"{s}://" for s in sorted(policy.schemes))
        raise FetchError(FetchFailure.refused, f"{url}: only {allowed} URLs are allowed", asked)
    if not parsed.host:
        raise FetchError(FetchFailure.refused, f"{url}: the URL has no host", asked)
    literal = parse_ip(parsed.host)
    if literal is not None:
        _refuse_if_not_allowed(literal, parsed, policy, asked)
    return parsed


def _refuse_if_not_allowed(address: IPAddress, url: httpx.URL, policy: FetchPolicy, original: str) -> None:
    reason = address_refusal(address, allow_private=policy.allow_private)
    if reason is None:
        return
    if address_refusal(address, allow_private=True) is None and policy.allow_private_setting:
        reason += f" (set {policy.allow_private_setting}=true to allow private networks)"
    named = "" if parse_ip(url.host) is not None else f"{url.host} resolves to {address}; "
    raise FetchError(FetchFailure.refused, f"refusing {url}: {named}{reason}", original)


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def _checked(url: httpx.URL, addresses: Sequence[IPAddress], policy: FetchPolicy, original: str) -> list[IPAddress]:
    if not addresses:
        raise FetchError(FetchFailure.unreachable, f"{url.host} resolves to no address", original)
    # Every address, not only the one connected to: a name answering one public and one
    # private address must not get through by the order of the answers.
    for address in addresses:
        _refuse_if_not_allowed(address, url, policy, original)
    return list(dict.fromkeys(addresses))


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The system resolver's TCP addresses for ``host``."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


async def aresolve_host(host: str, port: int) -> list[IPAddress]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def _resolve_failed(url: httpx.URL, exc: OSError, original: str) -> FetchError:
    reason = getattr(exc, "strerror", None) or str(exc)
    return FetchError(FetchFailure.unreachable, f"cannot resolve host {url.host!r} ({reason})", original)


def resolve_checked(
    url: str, policy: FetchPolicy, resolver: Resolver = resolve_host, *, asked: str | None = None
) -> list[IPAddress]:
    """The addresses ``url``'s host resolves to, every one checked; raises ``FetchError`` otherwise."""
    asked = asked or url
    parsed = check_url(url, policy, asked=asked)
    literal = parse_ip(parsed.host)
    if literal is not None:
        return [literal]
    try:
        addresses = resolver(parsed.raw_host.decode("ascii"), _port(parsed))
    except OSError as exc:
        raise _resolve_failed(parsed, exc, asked) from None
    return _checked(parsed, addresses, policy, asked)


async def aresolve_checked(
    url: str, policy: FetchPolicy, resolver: AsyncResolver = aresolve_host, *, asked: str | None = None
) -> list[IPAddress]:
    """``resolve_checked`` through an async resolver (the event loop's, by default)."""
    asked = asked or url
    parsed = check_url(url, policy, asked=asked)
    literal = parse_ip(parsed.host)
    if literal is not None:
        return [literal]
    try:
        addresses = await resolver(parsed.raw_host.decode("ascii"), _port(parsed))
    except OSError as exc:
        raise _resolve_failed(parsed, exc, asked) from None
    return _checked(parsed, addresses, policy, asked)


# --------------------------------------------------------------------------- requests


def _pinned_request(client: httpx.Client | httpx.AsyncClient, url: httpx.URL, address: IPAddress) -> httpx.Request:
    """GET ``url`` from ``address``: the IP in the URL, the name in Host and, for TLS, in SNI and the certificate check."""
    extensions = {}
    if url.scheme == "https" and parse_ip(url.host) is None:
        # httpcore hands this to ssl as server_hostname: SNI and hostname verification both use it.
        extensions["sni_hostname"] = url.raw_host.decode("ascii")
    headers = {"Host": url.netloc.decode("ascii"), "Accept-Encoding": "identity"}
    return client.build_request("GET", url.copy_with(host=str(address)), headers=headers, extensions=extensions)


def _client_options(policy: FetchPolicy) -> dict:
    return {
        "follow_redirects": False,
        # No proxies: a proxy would resolve the name again. SSL_CERT_FILE/DIR still count.
        "trust_env": False,
        "verify": httpx.create_ssl_context(trust_env=True),
        "timeout": httpx.Timeout(policy.timeout_s, connect=policy.connect_timeout_s),
    }


def _next_url(url: httpx.URL, response: httpx.Response, original: str) -> httpx.URL | None:
    """Where a redirect points (None for a 2xx answer); ``FetchError`` for any other answer."""
    status = response.status_code
    if status in REDIRECT_STATUSES:
        location = response.headers.get("location")
        if not location:
            raise FetchError(FetchFailure.http_status, f"{url} answered {status} without a Location", original, status)
        return url.join(location)
    if 200 <= status < 300:
        return None
    phrase = f" {response.reason_phrase}" if response.reason_phrase else ""
    raise FetchError(FetchFailure.http_status, f"{url} answered HTTP {status}{phrase}", original, status)


def _cannot_reach(
    url: httpx.URL, addresses: Sequence[IPAddress], exc: Exception | None, original: str
) -> FetchError:
    detail = f": {exc}" if exc is not None and str(exc) else f": {type(exc).__name__}" if exc else ""
    # The addresses tried, when a name was given: what an operator needs to see where the connection went.
    at = "" if parse_ip(url.host) is not None else f" at {', '.join(map(str, addresses))}"
    return FetchError(FetchFailure.unreachable, f"cannot reach {url.host}:{_port(url)}{at}{detail}", original)


def _too_many(policy: FetchPolicy, original: str) -> FetchError:
    return FetchError(FetchFailure.too_many_redirects, f"more than {policy.max_redirects} redirects", original)


def _too_large(where: str, max_bytes: int, url: str) -> FetchError:
    return FetchError(FetchFailure.too_large, f"{where} is larger than the limit of {max_bytes} bytes", url)


def _declared_too_large(response: httpx.Response, max_bytes: int) -> bool:
    # Only an unencoded body's Content-Length is the size read; refused before a byte is read.
    declared = response.headers.get("content-length", "")
    encoded = response.headers.get("content-encoding", "identity").lower() not in ("", "identity")
    return declared.isdigit() and not encoded and int(declared) > max_bytes


def read_capped(response: httpx.Response, max_bytes: int, where: str, into: BinaryIO) -> int:
    """Copy the body into ``into``, stopping once it passes ``max_bytes``; the bytes written."""
    if _declared_too_large(response, max_bytes):
        raise _too_large(where, max_bytes, str(response.request.url))
    size = 0
    for chunk in response.iter_bytes(CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(where, max_bytes, str(response.request.url))
        into.write(chunk)
    return size


async def aread_capped(response: httpx.Response, max_bytes: int, where: str, into: BinaryIO) -> int:
    """``read_capped`` for a response of an ``httpx.AsyncClient``."""
    if _declared_too_large(response, max_bytes):
        raise _too_large(where, max_bytes, str(response.request.url))
    size = 0
    async for chunk in response.aiter_bytes(CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(where, max_bytes, str(response.request.url))
        into.write(chunk)
    return size


def fetch_into(
    url: str,
    into: BinaryIO,
    *,
    policy: FetchPolicy,
    max_bytes: int,
    where: str,
    resolver: Resolver = resolve_host,
) -> int:
    """Write the body at ``url`` into ``into``, every hop checked and pinned; the bytes written.

    ``where`` names the body in a too-large message ('image_url', 'the download').
    """
    current = url
    for _ in range(policy.max_redirects + 1):
        addresses = resolve_checked(current, policy, resolver, asked=url)
        parsed = httpx.URL(current)
        # A client per hop: a pooled TLS connection made for one name must not carry another's request.
        with httpx.Client(**_client_options(policy)) as client:
            response, failure = None, None
            for address in addresses:  # each one checked; the next is tried only if this one refuses the connection
                try:
                    response = client.send(_pinned_request(client, parsed, address), stream=True)
                    break
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    failure = exc
                except httpx.HTTPError as exc:
                    raise _cannot_reach(parsed, addresses, exc, url) from exc
            if response is None:
                raise _cannot_reach(parsed, addresses, failure, url)
            try:
                following = _next_url(parsed, response, url)
                if following is None:
                    return read_capped(response, max_bytes, where, into)
            except FetchError as exc:
                exc.url = url  # read_capped knows the pinned address's URL only
                raise
            except httpx.HTTPError as exc:
                raise _cannot_reach(parsed, addresses, exc, url) from exc
            finally:
                response.close()
        current = str(following)
    raise _too_many(policy, url)


async def afetch_into(
    url: str,
    into: BinaryIO,
    *,
    policy: FetchPolicy,
    max_bytes: int,
    where: str,
    resolver: AsyncResolver = aresolve_host,
) -> int:
    """``fetch_into`` for async callers."""
    current = url
    for _ in range(policy.max_redirects + 1):
        addresses = await aresolve_checked(current, policy, resolver, asked=url)
        parsed = httpx.URL(current)
        async with httpx.AsyncClient(**_client_options(policy)) as client:
            response, failure = None, None
            for address in addresses:
                try:
                    response = await client.send(_pinned_request(client, parsed, address), stream=True)
                    break
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    failure = exc
                except httpx.HTTPError as exc:
                    raise _cannot_reach(parsed, addresses, exc, url) from exc
            if response is None:
                raise _cannot_reach(parsed, addresses, failure, url)
            try:
                following = _next_url(parsed, response, url)
                if following is None:
                    return await aread_capped(response, max_bytes, where, into)
            except FetchError as exc:
                exc.url = url  # read_capped knows the pinned address's URL only
                raise
            except httpx.HTTPError as exc:
                raise _cannot_reach(parsed, addresses, exc, url) from exc
            finally:
                await response.aclose()
        current = str(following)
    raise _too_many(policy, url)
