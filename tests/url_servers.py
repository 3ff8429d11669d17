"""Real HTTP and HTTPS servers on 127.0.0.1 for the URL-fetching tests (shared, trainer, inference).

``URLServer`` serves fixed bodies, redirects and an endless body, and records what each
request looked like (path, Host header, and for TLS the SNI name the client sent).
``tls_files`` makes a throw-away certificate for ``localhost`` and 127.0.0.1: pointing
``SSL_CERT_FILE`` at it makes the fetcher trust it, as a deployment with a private CA would.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

ENDLESS_BYTES = 64 * 1024 * 1024


@dataclass
class Seen:
    path: str
    host: str | None
    sni: str | None


@dataclass
class URLServer:
    """GET /<name> answers ``bodies[name]``; /redirect?to=<url> a 302; /endless 64 MiB with no length."""

    bodies: dict[str, bytes] = field(default_factory=dict)
    tls: tuple[Path, Path] | None = None
    seen: list[Seen] = field(default_factory=list)
    endless_sent: list[int] = field(default_factory=list)
    """Bytes /endless managed to send before the client hung up, one entry per request."""
    port: int = 0

    def start(self) -> URLServer:
        owner = self
        sni_names: dict[int, str | None] = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                sni = sni_names.get(id(self.connection)) if owner.tls else None
                owner.seen.append(Seen(self.path, self.headers.get("host"), sni))
                path, _, query = self.path.partition("?")
                if path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", query.removeprefix("to="))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path == "/endless":
                    self._endless()
                elif path == "/declared-huge":
                    self.send_response(200)
                    self.send_header("Content-Length", str(10 * 1024**3))
                    self.end_headers()
                    self.wfile.write(b"x" * 1024)
                elif path.lstrip("/") in owner.bodies:
                    body = owner.bodies[path.lstrip("/")]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def _endless(self) -> None:
                self.send_response(200)
                self.send_header("Connection", "close")  # no length: the body ends when the server closes
                self.end_headers()
                sent, chunk = 0, b"x" * 65536
                try:
                    while sent < ENDLESS_BYTES:
                        self.wfile.write(chunk)
                        sent += len(chunk)
                except OSError:
                    pass  # the client hung up: what the cap is for
                owner.endless_sent.append(sent)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)

            def remember_sni(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
                sni_names[id(sock)] = name

            context.sni_callback = remember_sni
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str = "", host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}/{path.lstrip('/')}"


def tls_files(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for DNS:localhost and IP:127.0.0.1, self-signed; the certificate is its own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ocrtune test localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        # The IP is in the certificate too: a client that checked the certificate against the
        # address it connected to, not the name it was given, would pass where it must fail.
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "localhost.pem", folder / "localhost.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
