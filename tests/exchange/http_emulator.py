"""Shared plumbing of the tests' protocol emulators: a local HTTP(S) server and an identity platform.

There is no Exchange server or Entra ID tenant here, so the tests run the
connectors against small local servers that speak the subset of each protocol
the connectors use, with response shapes taken from Microsoft's documentation.
They are *protocol emulators*, not mocks of the code under test: the real
exchangelib, msal and httpx talk to them over real sockets.

:class:`EmulatorServer` is a threaded HTTP/1.1 server on 127.0.0.1 (TLS
optional, with a throw-away self-signed certificate) that dispatches requests
to ``route(request) -> Response``.  :class:`IdentityPlatform` answers what msal
needs from ``https://login.microsoftonline.com``: instance discovery, the
tenant's OpenID configuration and the v2.0 token endpoint (client credentials
with a secret or a certificate-signed client assertion).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(obj).encode(), "application/json", headers or {})


def _self_signed(common_name: str, *extensions: tuple[x509.ExtensionType, bool]) -> tuple[Any, x509.Certificate]:
    """A fresh RSA key and a two-day self-signed certificate for it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return key, builder.sign(key, hashes.SHA256())


def _key_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_tls_material(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key: ``(cert.pem, key.pem)``."""
    key, cert = _self_signed(
        "127.0.0.1",
        (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False),
        (x509.BasicConstraints(ca=True, path_length=None), True),
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_key_pem(key))
    return cert_path, key_path


def make_app_certificate() -> tuple[str, str]:
    """An app registration's certificate: ``(private key PEM, certificate PEM)``."""
    key, cert = _self_signed("archiver-test-app")
    return _key_pem(key).decode(), cert.public_bytes(serialization.Encoding.PEM).decode()


class EmulatorServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 that hands each request to :meth:`route`."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with emulator.lock:
                    emulator.requests.append(req)
                try:
                    resp = emulator.route(req)
                except Exception as exc:  # an emulator bug must show up as a failing test, not a hang
                    resp = Response(500, f"emulator error: {exc!r}".encode(), "text/plain")
                    emulator.errors.append(repr(exc))
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.content_type)
                self.send_header("Content-Length", str(len(resp.body)))
                for k, v in resp.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(resp.body)

            do_GET = _handle
            do_POST = _handle

        self.lock = threading.RLock()
        self.requests: list[Request] = []
        self.errors: list[str] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
            self.scheme = "https"
        self.port = self._httpd.server_address[1]
        self.base = f"{self.scheme}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def route(self, req: Request) -> Response:
        raise NotImplementedError


class IdentityPlatform:
    """The Microsoft identity platform endpoints msal uses for the client-credentials grant.

    Shapes from "Microsoft identity platform and the OAuth 2.0 client credentials
    flow" (learn.microsoft.com): the token response carries ``token_type``,
    ``expires_in`` and ``access_token``; errors carry ``error``,
    ``error_description`` and ``error_codes``.
    """

    def __init__(self, base: str, tenant: str, client_id: str) -> None:
        self.base = base
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret: str | None = None
        self.certificate_pem: str | None = None
        #: when set, every token request is refused with this AADSTS error.
        self.refuse: str | None = None
        self.issued: set[str] = set()
        self.token_requests = 0
        self.scopes_seen: list[str] = []

    @property
    def authority(self) -> str:
        return f"{self.base}/{self.tenant}"

    def handles(self, req: Request) -> bool:
        return req.path.startswith(("/common/discovery/", f"/{self.tenant}/"))

    def route(self, req: Request) -> Response:
        if req.path == "/common/discovery/instance":
            return Response.json(
                {
                    "tenant_discovery_endpoint": f"{self.authority}/v2.0/.well-known/openid-configuration",
                    "api-version": "1.1",
                    "metadata": [],
                }
            )
        if req.path == f"/{self.tenant}/v2.0/.well-known/openid-configuration":
            return Response.json(
                {
                    "token_endpoint": f"{self.authority}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{self.authority}/oauth2/v2.0/authorize",
                    "device_authorization_endpoint": f"{self.authority}/oauth2/v2.0/devicecode",
                    "issuer": f"{self.authority}/v2.0",
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                }
            )
        if req.path == f"/{self.tenant}/oauth2/v2.0/token" and req.method == "POST":
            return self._token(req)
        return Response.json({"error": "not_found"}, 404)

    def _refusal(self, code: str, description: str, status: int = 401) -> Response:
        return Response.json({"error": code, "error_description": description, "error_codes": [7000215]}, status)

    def _token(self, req: Request) -> Response:
        self.token_requests += 1
        form = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        self.scopes_seen.append(form.get("scope", ""))
        if self.refuse:
            return self._refusal("invalid_client", self.refuse)
        if form.get("grant_type") != "client_credentials":
            return self._refusal("unsupported_grant_type", "AADSTS70003: grant type not supported", 400)
        if form.get("client_id") != self.client_id:
            return self._refusal("unauthorized_client", "AADSTS700016: Application not found in the directory.")
        if "client_secret" in form:
            if form["client_secret"] != self.client_secret:
                return self._refusal("invalid_client", "AADSTS7000215: Invalid client secret provided.")
        elif "client_assertion" in form:
            if not self.certificate_pem:
                return self._refusal("invalid_client", "AADSTS700027: no certificate registered.")
            cert = x509.load_pem_x509_certificate(self.certificate_pem.encode())
            try:
                jwt.decode(
                    form["client_assertion"],
                    cert.public_key(),  # type: ignore[arg-type]
                    algorithms=["RS256", "PS256"],
                    audience=f"{self.authority}/oauth2/v2.0/token",
                )
            except jwt.PyJWTError as exc:
                return self._refusal("invalid_client", f"AADSTS700027: client assertion invalid: {exc}")
        else:
            return self._refusal("invalid_client", "AADSTS7000218: no client credential given.")
        token = "emulated-" + secrets.token_urlsafe(16)
        self.issued.add(token)
        return Response.json(
            {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        )

    def valid_bearer(self, req: Request) -> bool:
        auth = req.header("authorization") or ""
        return auth.startswith("Bearer ") and auth[7:] in self.issued


class IdentityServer(EmulatorServer):
    """A stand-alone HTTPS identity platform (msal insists on an https authority)."""

    def __init__(self, tls: tuple[Path, Path], tenant: str, client_id: str) -> None:
        super().__init__(tls)
        self.identity = IdentityPlatform(self.base, tenant, client_id)

    def route(self, req: Request) -> Response:
        return self.identity.route(req)
