"""ocrtune_shared.fetch against real servers on 127.0.0.1: the address policy, pinning, redirects, the cap.

Every fetch test runs twice, through ``fetch_into`` (the trainer's worker) and through
``afetch_into`` (the inference service's handlers). The servers are real; where a test
needs a name to resolve to something else than /etc/hosts says, it passes the fetcher a
resolver of its own (the fetcher's parameter for it), never a patched socket module.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from url_servers import URLServer, tls_files

from ocrtune_shared.address_policy import IPAddress, address_refusal
from ocrtune_shared.fetch import (
    FetchError,
    FetchFailure,
    FetchPolicy,
    afetch_into,
    check_url,
    fetch_into,
    resolve_host,
)

BODY = "图片的字节".encode() * 1000
PRIVATE_OK = FetchPolicy(schemes=frozenset({"http", "https"}), allow_private=True)
DEFAULT = FetchPolicy(schemes=frozenset({"http", "https"}), allow_private_setting="OCRTUNE_X_ALLOW_PRIVATE_URLS")


@pytest.fixture(scope="module")
def server() -> Iterator[URLServer]:
    started = URLServer(bodies={"page.png": BODY}).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(tls: tuple[Path, Path]) -> Iterator[URLServer]:
    started = URLServer(bodies={"page.png": BODY}, tls=tls).start()
    yield started
    started.stop()


class ScriptedResolver:
    """Answers each lookup with the next list of ``answers`` (the last one repeats), and counts lookups."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = [[ipaddress.ip_address(a) for a in answer] for answer in answers]
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        if host == "localhost":
            return resolve_host(host, port)  # the page a redirect goes on to, resolved for real
        self.calls.append(host)
        return self.answers[min(len(self.calls) - 1, len(self.answers) - 1)]


Fetch = Callable[..., bytes]


def _sync_fetch(url: str, policy: FetchPolicy, max_bytes: int = 1 << 20, resolver=None) -> bytes:
    body = io.BytesIO()
    extra = {"resolver": resolver} if resolver else {}
    fetch_into(url, body, policy=policy, max_bytes=max_bytes, where="the test body", **extra)
    return body.getvalue()


def _async_fetch(url: str, policy: FetchPolicy, max_bytes: int = 1 << 20, resolver=None) -> bytes:
    async def resolve(host: str, port: int) -> list[IPAddress]:
        return resolver(host, port)

    async def run() -> bytes:
        body = io.BytesIO()
        extra = {"resolver": resolve} if resolver else {}
        await afetch_into(url, body, policy=policy, max_bytes=max_bytes, where="the test body", **extra)
        return body.getvalue()

    return asyncio.run(run())


@pytest.fixture(params=["sync", "async"])
def fetch(request: pytest.FixtureRequest) -> Fetch:
    return _sync_fetch if request.param == "sync" else _async_fetch


# --------------------------------------------------------------------------- the address policy


@pytest.mark.parametrize(
    "address, what",
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("192.168.1.20", "private"),
        ("172.16.0.1", "private"),
        ("fd12:3456::1", "private"),
        ("100.64.0.1", "shared"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: the same host as 127.0.0.1
        ("::ffff:10.0.0.5", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a00:5", "private"),  # NAT64 wrapping 10.0.0.5
    ],
)
def test_private_addresses_refused_by_default_and_allowed_by_the_setting(address: str, what: str) -> None:
    ip = ipaddress.ip_address(address)
    reason = address_refusal(ip, allow_private=False)
    assert reason is not None and what in reason and "not a public address" in reason
    assert address_refusal(ip, allow_private=True) is None


@pytest.mark.parametrize(
    "address, what",
    [
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("::ffff:169.254.169.254", "metadata"),
        ("169.254.170.2", "link-local"),  # ECS task metadata
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_metadata_and_special_addresses_refused_even_with_the_setting(address: str, what: str) -> None:
    for allow_private in (False, True):
        reason = address_refusal(ipaddress.ip_address(address), allow_private=allow_private)
        assert reason is not None and what in reason, (address, allow_private, reason)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address), allow_private=False) is None


def test_check_url_scheme_host_and_literals_without_the_network() -> None:
    https_only = FetchPolicy()
    cases = {
        "http://example.com/a.png": "only https:// URLs",
        "ftp://example.com/a": "only https:// URLs",
        "https:///a.png": "no host",
        "https://127.0.0.1/a.png": "127.0.0.1 is a loopback address",
        "https://[::1]/a.png": "::1 is a loopback address",
        "https://10.0.0.5/a.png": "10.0.0.5 is a private address",
        "https://169.254.169.254/latest": "cloud metadata",
    }
    for url, says in cases.items():
        with pytest.raises(FetchError) as err:
            check_url(url, https_only)
        assert err.value.failure is FetchFailure.refused and says in err.value.message, (url, err.value.message)
    assert check_url("https://example.com/a.png", https_only).host == "example.com"  # names wait for resolution


# --------------------------------------------------------------------------- real fetches


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "10.0.0.5", "169.254.169.254"])
def test_private_hosts_refused_by_default_without_a_request(fetch: Fetch, server: URLServer, host: str) -> None:
    before = len(server.seen)
    with pytest.raises(FetchError) as err:
        fetch(server.url("page.png", host=host), DEFAULT)
    assert err.value.failure is FetchFailure.refused
    if host != "169.254.169.254":
        assert "set OCRTUNE_X_ALLOW_PRIVATE_URLS=true" in err.value.message
    if host == "localhost":  # the name, then what it resolved to
        assert "localhost resolves to 127.0.0.1; 127.0.0.1 is a loopback address" in err.value.message
    assert len(server.seen) == before  # refused before connecting


def test_allowed_with_the_setting_and_the_name_kept_in_host(fetch: Fetch, server: URLServer) -> None:
    assert fetch(server.url("page.png"), PRIVATE_OK) == BODY
    assert fetch(server.url("page.png", host="localhost"), PRIVATE_OK) == BODY
    assert server.seen[-1].host == f"localhost:{server.port}"


def test_metadata_refused_even_with_the_setting(fetch: Fetch) -> None:
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://[::ffff:169.254.169.254]/"):
        with pytest.raises(FetchError) as err:
            fetch(url, PRIVATE_OK)
        assert err.value.failure is FetchFailure.refused and "metadata" in err.value.message


@pytest.mark.parametrize(
    "target, says",
    [
        ("http://169.254.169.254/latest/meta-data/iam", "169.254.169.254 is a cloud metadata address"),
        ("http://[fe80::1]/x", "fe80::1 is a link-local address"),
        ("http://metadata.test/computeMetadata/v1/", "metadata.test resolves to 169.254.169.254"),
    ],
)
def test_every_redirect_hop_is_checked(fetch: Fetch, server: URLServer, target: str, says: str) -> None:
    resolver = ScriptedResolver(["169.254.169.254"])  # only metadata.test asks it
    with pytest.raises(FetchError) as err:
        fetch(server.url(f"redirect?to={target}"), PRIVATE_OK, resolver=resolver)
    assert err.value.failure is FetchFailure.refused and says in err.value.message
    assert err.value.url == server.url(f"redirect?to={target}")


def test_redirects_are_followed_and_bounded(fetch: Fetch, server: URLServer) -> None:
    assert fetch(server.url(f"redirect?to={server.url('page.png', host='localhost')}"), PRIVATE_OK) == BODY
    loop = server.url("redirect?to=/redirect?to=/redirect?to=/page.png")
    assert fetch(loop, PRIVATE_OK) == BODY
    with pytest.raises(FetchError) as err:
        fetch(loop, FetchPolicy(schemes=frozenset({"http"}), allow_private=True, max_redirects=2))
    assert err.value.failure is FetchFailure.too_many_redirects and "more than 2 redirects" in err.value.message


def test_status_and_connection_errors_name_the_url(fetch: Fetch, server: URLServer) -> None:
    with pytest.raises(FetchError) as err:
        fetch(server.url("missing.png"), PRIVATE_OK)
    assert err.value.failure is FetchFailure.http_status and err.value.status == 404
    assert f"{server.url('missing.png')} answered HTTP 404" in err.value.message
    from ocrtune_devkit.processes import free_port

    with pytest.raises(FetchError) as err:
        fetch(f"http://127.0.0.1:{free_port()}/x", PRIVATE_OK)
    assert err.value.failure is FetchFailure.unreachable and "cannot reach 127.0.0.1:" in err.value.message
    with pytest.raises(FetchError) as err:
        fetch("http://no-such-host.invalid/x", PRIVATE_OK)
    assert err.value.failure is FetchFailure.unreachable and "cannot resolve host 'no-such-host.invalid'" in err.value.message


def test_the_cap_stops_a_large_body(fetch: Fetch, server: URLServer) -> None:
    with pytest.raises(FetchError) as err:
        fetch(server.url("endless"), PRIVATE_OK, max_bytes=1 << 20)
    assert err.value.failure is FetchFailure.too_large
    assert err.value.message == f"the test body is larger than the limit of {1 << 20} bytes"
    assert err.value.url == server.url("endless")
    # The fetcher hung up near the cap: the server got nowhere near its 64 MiB (socket buffers hold a few MiB).
    end = time.monotonic() + 10
    while not server.endless_sent and time.monotonic() < end:
        time.sleep(0.05)
    assert server.endless_sent and server.endless_sent[-1] < 16 * (1 << 20), server.endless_sent
    # A declared Content-Length above the cap is refused before the body is read.
    with pytest.raises(FetchError) as err:
        fetch(server.url("declared-huge"), PRIVATE_OK, max_bytes=1 << 20)
    assert err.value.failure is FetchFailure.too_large
    # At the cap exactly is fine.
    assert fetch(server.url("page.png"), PRIVATE_OK, max_bytes=len(BODY)) == BODY


# --------------------------------------------------------------------------- pinning (DNS rebinding)


def test_the_address_checked_is_the_address_used(fetch: Fetch, server: URLServer) -> None:
    # First answer 127.0.0.1 (where the server is), any later one an address nothing listens on:
    # the fetch succeeds only if it connects to the address it checked, without resolving again.
    resolver = ScriptedResolver(["127.0.0.1"], ["10.255.255.1"])
    assert fetch(server.url("page.png", host="rebind.test"), PRIVATE_OK, resolver=resolver) == BODY
    assert resolver.calls == ["rebind.test"]
    assert server.seen[-1].host == f"rebind.test:{server.port}"


def test_a_rebinding_name_never_reaches_the_private_address(fetch: Fetch, server: URLServer) -> None:
    # The attack: a public answer for the check, 127.0.0.1 for the connection. The fetch goes
    # to the public address it checked (unreachable from here), never to the server.
    resolver = ScriptedResolver(["93.184.216.34"], ["127.0.0.1"])
    before = len(server.seen)
    policy = FetchPolicy(schemes=frozenset({"http"}), connect_timeout_s=1.0, timeout_s=2.0)
    try:
        fetch(server.url("page.png", host="rebind.test"), policy, resolver=resolver)
    except FetchError as exc:  # what answers at the public address depends on this machine's network
        assert "127.0.0.1" not in exc.message, exc.message
    assert resolver.calls == ["rebind.test"]
    assert len(server.seen) == before


def test_every_resolved_address_is_checked(fetch: Fetch, server: URLServer) -> None:
    resolver = ScriptedResolver(["93.184.216.34", "127.0.0.1"])
    with pytest.raises(FetchError) as err:
        fetch(server.url("page.png", host="mixed.test"), DEFAULT, resolver=resolver)
    assert err.value.failure is FetchFailure.refused and "127.0.0.1 is a loopback address" in err.value.message


def test_next_checked_address_tried_when_one_refuses_the_connection(fetch: Fetch, server: URLServer) -> None:
    from ocrtune_devkit.processes import free_port

    # ::1 has nothing on this port (the server is IPv4 only): the fetch goes on to 127.0.0.1.
    resolver = ScriptedResolver(["::1", "127.0.0.1"])
    assert fetch(server.url("page.png", host="dual.test"), PRIVATE_OK, resolver=resolver) == BODY
    with pytest.raises(FetchError) as err:
        fetch(f"http://dual.test:{free_port()}/x", PRIVATE_OK, resolver=ScriptedResolver(["::1", "127.0.0.1"]))
    assert err.value.failure is FetchFailure.unreachable
    assert "cannot reach dual.test:" in err.value.message and "at ::1, 127.0.0.1" in err.value.message


# --------------------------------------------------------------------------- TLS on the pinned address


def test_tls_sends_the_name_and_verifies_the_certificate_against_it(
    fetch: Fetch, tls_server: URLServer, tls: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls[0]))  # trust the test certificate, as a private CA is trusted
    assert fetch(tls_server.url("page.png", host="localhost"), PRIVATE_OK) == BODY
    assert tls_server.seen[-1].sni == "localhost"  # the name, though the connection went to 127.0.0.1
    assert tls_server.seen[-1].host == f"localhost:{tls_server.port}"
    # Another name pinned to the same address: the certificate (valid for localhost and for
    # 127.0.0.1) must be checked against that name, and fail.
    before = len(tls_server.seen)
    with pytest.raises(FetchError) as err:
        fetch(tls_server.url("page.png", host="other.test"), PRIVATE_OK, resolver=ScriptedResolver(["127.0.0.1"]))
    assert err.value.failure is FetchFailure.unreachable and "certificate" in err.value.message.lower()
    assert len(tls_server.seen) == before


def test_tls_to_an_untrusted_certificate_fails(fetch: Fetch, tls_server: URLServer, monkeypatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with pytest.raises(FetchError) as err:
        fetch(tls_server.url("page.png", host="localhost"), PRIVATE_OK)
    assert err.value.failure is FetchFailure.unreachable and "certificate" in err.value.message.lower()
