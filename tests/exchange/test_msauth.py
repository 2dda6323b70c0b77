"""The msal token helper: credentials from files, clear errors, token reuse."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from connectors.errors import AuthError
from connectors.msauth import CertificateCredential, MsalSettings, TokenProvider, certificate_from_file

from .graph_emulator import CLIENT_ID, TENANT, GraphEmulator
from .http_emulator import make_app_certificate


def test_certificate_from_pem_file(tmp_path: Path) -> None:
    key, cert = make_app_certificate()
    both = tmp_path / "app.pem"
    both.write_text(key + cert, encoding="ascii")
    cred = certificate_from_file(str(both), None, None)
    assert cred.certificate_pem is not None and cred.certificate_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert "private_key" not in repr(cred) or "***" in repr(cred)
    key_only = tmp_path / "key.pem"
    key_only.write_text(key, encoding="ascii")
    with pytest.raises(AuthError, match="certificate_thumbprint"):
        certificate_from_file(str(key_only), None, None)
    assert certificate_from_file(str(key_only), "A1B2", None).thumbprint == "A1B2"
    cert_only = tmp_path / "cert.pem"
    cert_only.write_text(cert, encoding="ascii")
    with pytest.raises(AuthError, match="no PEM private key"):
        certificate_from_file(str(cert_only), None, None)
    with pytest.raises(AuthError, match="Cannot read"):
        certificate_from_file(str(tmp_path / "missing.pem"), None, None)


def _graph_settings(graph: GraphEmulator, verify: str) -> MsalSettings:
    """The emulated tenant's Graph app with its client secret, TLS verified against ``verify``."""
    return MsalSettings(
        tenant=TENANT,
        client_id=CLIENT_ID,
        scopes=("https://graph.microsoft.com/.default",),
        client_secret=graph.identity.client_secret,
        authority=graph.identity.authority,
        verify=verify,
    )


def test_token_is_reused_until_near_expiry(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    settings = _graph_settings(graph, str(tls_material[0]))
    provider = TokenProvider(settings)
    first = provider.token()
    assert provider.token() == first and graph.identity.token_requests == 1
    assert first in graph.identity.issued
    assert "s3cret" not in repr(settings)


def test_unknown_tenant_is_an_auth_error(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    provider = TokenProvider(
        MsalSettings(
            tenant="no-such-tenant",
            client_id=CLIENT_ID,
            scopes=("https://graph.microsoft.com/.default",),
            client_secret="x",
            authority=f"{graph.base}/no-such-tenant",
            verify=str(tls_material[0]),
        )
    )
    with pytest.raises(AuthError, match="no-such-tenant"):
        provider.token()


def test_exactly_one_credential() -> None:
    with pytest.raises(AuthError, match="exactly one"):
        TokenProvider(MsalSettings(tenant="t", client_id="c", scopes=("s",)))


def _encrypted(key_pem: str, password: bytes) -> str:
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(password)
    ).decode()


def test_unusable_private_keys_are_clear_errors(tmp_path: Path) -> None:
    """Finding 3: an encrypted key without its password, or a damaged key, is a sentence saying what to fix."""
    key, cert = make_app_certificate()
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_text(_encrypted(key, b"pw") + cert, encoding="ascii")
    with pytest.raises(AuthError, match=r"encrypted: set auth\.certificate_password_env"):
        certificate_from_file(str(encrypted), None, None)
    with pytest.raises(AuthError, match="password is wrong"):
        certificate_from_file(str(encrypted), None, "not-pw")
    assert certificate_from_file(str(encrypted), None, "pw").passphrase == "pw"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n" + cert, "ascii")
    with pytest.raises(AuthError, match="damaged"):
        certificate_from_file(str(garbage), None, None)


def test_msal_failures_are_auth_errors(graph: GraphEmulator, tls_material: tuple[Path, Path], tmp_path: Path) -> None:
    """Finding 3: what msal raises besides its documented errors (here: a CA file that is not there) is an AuthError."""
    settings = _graph_settings(graph, str(tmp_path / "missing-ca.pem"))
    with pytest.raises(AuthError, match=r"missing-ca\.pem"):
        TokenProvider(settings).token()
    _key, cert = make_app_certificate()
    damaged = "-----BEGIN PRIVATE KEY-----\nAAAAsecretAAAA\n-----END PRIVATE KEY-----\n"
    bad_key = CertificateCredential(private_key_pem=damaged, certificate_pem=cert)
    certificate = replace(settings, client_secret=None, certificate=bad_key, verify=str(tls_material[0]))
    with pytest.raises(AuthError) as info:
        TokenProvider(certificate).token()
    assert "secret" not in str(info.value)


def test_invalidate_gets_a_new_token(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    """Finding 10: after a 401 the refused token must not come back from msal's own cache."""
    provider = TokenProvider(_graph_settings(graph, str(tls_material[0])))
    first = provider.token()
    provider.invalidate()
    assert provider.token() != first and graph.identity.token_requests == 2
