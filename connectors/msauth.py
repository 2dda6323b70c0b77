"""App-only OAuth2 access tokens from the Microsoft identity platform, through msal.

Both Exchange connectors (Graph, and EWS with OAuth) authenticate as an
application with the client-credentials grant: a client secret or a
certificate.  msal does the protocol work (authority discovery, client
assertions signed with the certificate, an in-memory token cache that hands
back a still-valid token without a round trip); this module only adds a
configurable authority (so tests and sovereign clouds can point it elsewhere),
a CA bundle, and one clear :class:`~connectors.errors.AuthError` or
:class:`~connectors.errors.TransientError` instead of msal's result dicts.

Secrets pass through this module but are never logged or put in messages.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import msal
import requests
from cryptography.hazmat.primitives import serialization

from connectors.errors import AuthError, TransientError

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"

#: token-endpoint error codes that retrying later may fix (RFC 6749 and Entra ID extensions).
_TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error", "service_unavailable"})
_PRIVATE_KEY_BLOCK = re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.DOTALL)


@dataclass(frozen=True, slots=True)
class CertificateCredential:
    """A certificate registered on the app: its private key and the certificate or its thumbprint."""

    private_key_pem: str = ""
    certificate_pem: str | None = None
    #: SHA-1 thumbprint in hex; when absent msal computes a SHA-256 one from ``certificate_pem``.
    thumbprint: str | None = None
    passphrase: str | None = None
    #: a PKCS#12 file used instead of the PEM fields.
    pfx_path: str | None = None

    def __repr__(self) -> str:
        return f"CertificateCredential(thumbprint={self.thumbprint!r}, private_key=***)"


@dataclass(frozen=True, slots=True)
class MsalSettings:
    """Everything needed to obtain an app-only token.  Exactly one of secret and certificate."""

    tenant: str
    client_id: str
    scopes: tuple[str, ...]
    client_secret: str | None = field(default=None, repr=False)
    certificate: CertificateCredential | None = None
    #: ``https://host/tenant``; default ``https://login.microsoftonline.com/{tenant}``.
    authority: str | None = None
    #: CA bundle path, or False to skip TLS verification (never in production).
    verify: str | bool = True
    timeout: float = 30.0

    @property
    def authority_url(self) -> str:
        return (self.authority or f"{DEFAULT_AUTHORITY_HOST}/{self.tenant}").rstrip("/")


def certificate_from_file(path: str, thumbprint: str | None, passphrase: str | None) -> CertificateCredential:
    """Read a PEM file holding the private key (and usually the certificate); raise AuthError if unusable.

    The key is loaded here, once, so that an encrypted key without its password
    or a damaged key block is one sentence at start-up instead of an exception
    from deep inside msal on the first token request.  A ``.pfx``/``.p12`` file is
    handed to msal as is (msal reads it with the same library).
    """
    if path.lower().endswith((".pfx", ".p12")):
        return CertificateCredential(pfx_path=path, thumbprint=thumbprint, passphrase=passphrase)
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthError(f"Cannot read the certificate file {path}: {exc}.") from None
    key_start = text.find("-----BEGIN ")
    if "PRIVATE KEY-----" not in text or key_start < 0:
        raise AuthError(f"The certificate file {path} holds no PEM private key.")
    _check_private_key(path, text, passphrase)
    cert_pem: str | None = None
    begin = text.find("-----BEGIN CERTIFICATE-----")
    if begin >= 0:
        end_marker = "-----END CERTIFICATE-----"
        end = text.find(end_marker, begin)
        if end > 0:
            cert_pem = text[begin : end + len(end_marker)]
    if cert_pem is None and not thumbprint:
        raise AuthError(
            f"The certificate file {path} holds no certificate: add it to the file or set certificate_thumbprint."
        )
    return CertificateCredential(
        private_key_pem=text, certificate_pem=cert_pem, thumbprint=thumbprint, passphrase=passphrase
    )


def _check_private_key(path: str, text: str, passphrase: str | None) -> None:
    """Load the PEM private key the way msal will (``cryptography``); an AuthError saying what to fix otherwise."""
    block = _PRIVATE_KEY_BLOCK.search(text)
    if block is None:
        raise AuthError(f"The certificate file {path} holds no complete PEM private key block.")
    secret = passphrase.encode() if passphrase else None
    try:
        serialization.load_pem_private_key(block.group(0).encode("ascii"), password=secret)
    except TypeError:
        if secret is None:
            raise AuthError(
                f"The private key in {path} is encrypted: set auth.certificate_password_env to the variable "
                "holding its password."
            ) from None
        raise AuthError(f"The private key in {path} is not encrypted: remove auth.certificate_password_env.") from None
    except ValueError:
        if secret is not None:
            raise AuthError(
                f"The private key in {path} cannot be read: the password is wrong, or the key is damaged."
            ) from None
        raise AuthError(f"The private key in {path} is damaged or in a format that cannot be read.") from None
    except Exception as exc:  # cryptography reports unsupported key types in several ways
        raise AuthError(f"The private key in {path} cannot be used ({exc.__class__.__name__}).") from None


class TokenProvider:
    """Hands out app-only access tokens, renewing them shortly before they expire.  Thread-safe."""

    #: a token this close to expiry is renewed rather than used.
    RENEW_BEFORE_S = 300.0

    def __init__(self, settings: MsalSettings) -> None:
        if (settings.client_secret is None) == (settings.certificate is None):
            raise AuthError("OAuth needs exactly one credential: a client secret or a certificate.")
        self._settings = settings
        self._app: Any = None
        self._lock = threading.Lock()
        # msal's own cache is consulted first; this copy only avoids its bookkeeping on every request.
        self._token: str | None = None
        self._expires_at = 0.0

    @property
    def settings(self) -> MsalSettings:
        return self._settings

    def _credential(self) -> str | dict[str, Any]:
        s = self._settings
        if s.client_secret is not None:
            return s.client_secret
        assert s.certificate is not None
        cred: dict[str, Any] = (
            {"private_key_pfx_path": s.certificate.pfx_path}
            if s.certificate.pfx_path
            else {"private_key": s.certificate.private_key_pem}
        )
        if s.certificate.thumbprint:
            cred["thumbprint"] = s.certificate.thumbprint
        if s.certificate.certificate_pem:
            cred["public_certificate"] = s.certificate.certificate_pem
        if s.certificate.passphrase:
            cred["passphrase"] = s.certificate.passphrase
        return cred

    def _application(self) -> Any:
        if self._app is None:
            s = self._settings
            if isinstance(s.verify, str) and not os.path.exists(s.verify):
                raise AuthError(f"The CA file {s.verify} (auth.ca_file) does not exist.")
            try:
                self._app = msal.ConfidentialClientApplication(
                    s.client_id,
                    client_credential=self._credential(),
                    authority=s.authority_url,
                    token_cache=msal.TokenCache(),
                    http_client=_http_client(s.verify, s.timeout),
                    # Instance discovery asks login.microsoftonline.com whether a host is a Microsoft
                    # authority; an explicitly configured authority is trusted as given (private clouds,
                    # tests), and the well-known sovereign-cloud hosts skip it in msal anyway.
                    instance_discovery=None if s.authority is None else False,
                )
            except requests.RequestException as exc:
                raise TransientError(
                    f"Cannot reach the identity platform at {s.authority_url}: {exc.__class__.__name__}."
                ) from None
            except ValueError as exc:
                # msal reports an unknown tenant, a bad authority URL and an unusable key as ValueError.
                raise AuthError(
                    f"The identity platform at {s.authority_url} refused the app's configuration "
                    f"(tenant {s.tenant!r}, client {s.client_id!r}): {_first_line(str(exc))}"
                ) from None
            except Exception as exc:
                # Anything else (a key msal cannot use, a CA bundle requests cannot load) is this
                # source's configuration, not a crash of the sync.  The message names the class only:
                # msal's texts may quote the credential.
                raise AuthError(_setup_problem(s, exc)) from None
        return self._app

    def token_with_expiry(self) -> tuple[str, float]:
        """A valid access token and its expiry (epoch seconds); raises AuthError or TransientError."""
        with self._lock:
            now = time.time()
            if self._token is not None and now < self._expires_at - self.RENEW_BEFORE_S:
                return self._token, self._expires_at
            app = self._application()
            try:
                result = app.acquire_token_for_client(scopes=list(self._settings.scopes))
            except requests.RequestException as exc:
                raise TransientError(
                    f"Cannot reach the token endpoint of {self._settings.authority_url}: {exc.__class__.__name__}."
                ) from None
            except Exception as exc:  # e.g. the certificate's key cannot sign the client assertion
                raise AuthError(_setup_problem(self._settings, exc)) from None
            if not isinstance(result, dict) or "access_token" not in result:
                raise _token_error(self._settings, result if isinstance(result, dict) else {})
            self._token = str(result["access_token"])
            self._expires_at = now + float(result.get("expires_in", 3600))
            return self._token, self._expires_at

    def token(self) -> str:
        """A valid access token; raises AuthError or TransientError."""
        return self.token_with_expiry()[0]

    def invalidate(self) -> None:
        """Forget the token (after a 401), here and in msal's cache, so the next call asks for a new one.

        msal's ``acquire_token_for_client`` looks in its own cache first and would
        hand back the very token the service just refused (revoked, or a
        continuous-access-evaluation event) until it expires, up to an hour later;
        ``remove_tokens_for_client`` (msal 1.27+; the project needs 1.28) drops it there too.
        """
        with self._lock:
            self._token = None
            self._expires_at = 0.0
            if self._app is not None:
                self._app.remove_tokens_for_client()


def _http_client(verify: str | bool, timeout: float) -> requests.Session:
    """A session that verifies TLS with ``verify`` on every request.

    Passed per request on purpose: requests lets ``REQUESTS_CA_BUNDLE`` override a
    session-wide ``verify``, which would silently ignore a configured CA bundle.
    """
    session = requests.Session()
    session.mount("https://", requests.adapters.HTTPAdapter(max_retries=1))
    session.request = functools.partial(session.request, timeout=timeout, verify=verify)  # type: ignore[method-assign]
    return session


def _setup_problem(settings: MsalSettings, exc: Exception) -> str:
    """A sentence for an unexpected msal failure: where, which kind, and what to check (never msal's text)."""
    what = "certificate" if settings.certificate is not None else "client secret"
    return (
        f"Cannot obtain a token from {settings.authority_url} for client {settings.client_id!r} "
        f"({exc.__class__.__name__}). Check the {what} files and auth.ca_file of this source."
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no detail given"


def _token_error(settings: MsalSettings, result: dict[str, Any]) -> AuthError | TransientError:
    code = str(result.get("error", "unknown_error"))
    desc = _first_line(str(result.get("error_description", "")))
    msg = (
        f"The identity platform at {settings.authority_url} refused a token for client "
        f"{settings.client_id!r} (scope {' '.join(settings.scopes)}): {code}: {desc} "
        "Check the tenant, client id, secret or certificate, and the app's admin consent."
    )
    if code in _TRANSIENT_ERRORS:
        return TransientError(msg)
    return AuthError(msg)
