"""image_url fetched through ocrtune_shared.fetch: refused, allowed, capped, each error a 4xx naming image_url.

The in-process tests call ``load_source``, what ``POST /ocr`` and ``/v1/chat/completions``
call, against a real HTTPS server on 127.0.0.1 whose certificate is trusted through
``SSL_CERT_FILE``; the last ones go through the session's service over HTTP.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import pytest
from PIL import Image
from url_servers import URLServer, tls_files

from ocrtune_inference.documents import load_pages
from ocrtune_inference.inputs import load_source
from ocrtune_inference.settings import InferenceSettings
from ocrtune_shared.errors import ServiceError


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 24), "white").save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


@pytest.fixture(scope="module")
def image_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[URLServer]:
    started = URLServer(bodies={"line.png": PNG}, tls=tls_files(tmp_path_factory.mktemp("tls"))).start()
    yield started
    started.stop()


@pytest.fixture
def trusted(image_server: URLServer, monkeypatch: pytest.MonkeyPatch) -> URLServer:
    assert image_server.tls is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(image_server.tls[0]))
    return image_server


def _load(url: str, **settings: object) -> bytes:
    return asyncio.run(load_source(None, url, InferenceSettings(**settings)))


def _refusal(url: str, **settings: object) -> ServiceError:
    with pytest.raises(ServiceError) as err:
        _load(url, **settings)
    return err.value


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "10.0.0.5", "192.168.1.20"])
def test_private_hosts_refused_by_default(trusted: URLServer, host: str) -> None:
    before = len(trusted.seen)
    error = _refusal(trusted.url("line.png", host=host))
    assert (error.status, error.body.code.value, error.body.where) == (422, "uri_not_allowed", "image_url")
    assert "not a public address" in error.body.message
    assert "set OCRTUNE_INFERENCE_ALLOW_PRIVATE_URLS=true" in error.body.message
    assert len(trusted.seen) == before


def test_allowed_with_the_setting_and_read_as_an_image(trusted: URLServer) -> None:
    data = _load(trusted.url("line.png", host="localhost"), allow_private_urls=True)
    assert data == PNG
    assert trusted.seen[-1].sni == "localhost" and trusted.seen[-1].host == f"localhost:{trusted.port}"
    pages = load_pages(data, max_pixels=1_000_000, max_pages=1, pdf_scale=1.0, where="image_url")
    assert pages[0].size == (64, 24)


@pytest.mark.parametrize(
    "url, says",
    [
        ("https://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("https://[fd00:ec2::254]/", "cloud metadata"),
        ("http://{localhost}/line.png", "only https:// URLs"),
        ("https://{localhost}/redirect?to=http://{localhost}/line.png", "only https:// URLs"),
        ("https://{localhost}/redirect?to=https://169.254.169.254/", "cloud metadata"),
    ],
)
def test_refused_even_with_the_setting(trusted: URLServer, url: str, says: str) -> None:
    url = url.format(localhost=f"localhost:{trusted.port}")
    error = _refusal(url, allow_private_urls=True)
    assert (error.status, error.body.code.value, error.body.where) == (422, "uri_not_allowed", "image_url")
    assert says in error.body.message and error.body.message.startswith("cannot fetch image_url: ")


def test_a_body_above_the_upload_limit_is_a_413(trusted: URLServer) -> None:
    error = _refusal(trusted.url("line.png", host="localhost"), allow_private_urls=True, max_upload_bytes=100)
    assert (error.status, error.body.code.value, error.body.where) == (413, "payload_too_large", "image_url")
    assert error.body.message == "image_url is larger than the limit of 100 bytes"
    error = _refusal(trusted.url("endless", host="localhost"), allow_private_urls=True, max_upload_bytes=1 << 20)
    assert error.status == 413


def test_answers_other_than_2xx_and_dead_hosts_are_422(trusted: URLServer) -> None:
    from ocrtune_devkit.processes import free_port

    error = _refusal(trusted.url("missing.png", host="localhost"), allow_private_urls=True)
    assert (error.status, error.body.code.value, error.body.where) == (422, "invalid_request", "image_url")
    assert "answered HTTP 404" in error.body.message
    error = _refusal(f"https://localhost:{free_port()}/x.png", allow_private_urls=True)
    assert error.status == 422 and "cannot reach localhost:" in error.body.message


def test_the_service_refuses_a_name_resolving_to_loopback(client) -> None:
    # The session's service runs with the default: no private networks.
    response = client.post("/ocr", json={"image_url": "https://localhost:9/line.png"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "uri_not_allowed" and error["where"] == "image_url"
    assert "localhost resolves to 127.0.0.1" in error["message"]
    chat = client.post("/v1/chat/completions", json={
        "model": "a0",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://10.0.0.5/a.png"}}]}],
    })
    assert chat.status_code == 422, chat.text
    assert chat.json()["error"]["code"] == "uri_not_allowed" and "10.0.0.5 is a private address" in chat.text
