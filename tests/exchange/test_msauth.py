"""The msal token helper: credentials from files, clear errors, token reuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.errors import AuthError
from connectors.msauth import MsalSettings, TokenProvider, certificate_from_file

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


def test_token_is_reused_until_near_expiry(graph: GraphEmulator, tls_material: tuple[Path, Path]) -> None:
    settings = MsalSettings(
        tenant=TENANT,
        client_id=CLIENT_ID,
        scopes=("https://graph.microsoft.com/.default",),
        client_secret=graph.identity.client_secret,
        authority=graph.identity.authority,
        verify=str(tls_material[0]),
    )
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
