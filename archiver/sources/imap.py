"""Build an :class:`~connectors.imap.ImapConnector` from an ``type: imap`` source in the config.

Static mistakes (no credential, two credentials, plaintext to a remote host, a host
name that cannot be one, a port out of range) are :class:`ConfigError` at build time.
Secrets are read only when an account logs in, so a missing password for one mailbox
fails that mailbox (an ``AuthError`` naming it) while the other mailboxes of the source
are still archived.  Secret values are never put in messages or logs.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shlex
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

from archiver.config import ImapAccount as ImapAccountConfig
from archiver.config import ImapSource, Xoauth2Auth
from archiver.errors import ConfigError
from archiver.sources import first_line
from connectors.errors import AuthError, TransientError
from connectors.imap import ImapAccount, ImapConnector, ImapServer
from connectors.msauth import MsalSettings, TokenProvider, certificate_from_file

log = logging.getLogger(__name__)

#: seconds a token command may take before the login is given up as transient.
TOKEN_COMMAND_TIMEOUT_S = 60.0


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses, where plaintext never leaves the machine."""
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def ssl_context(src: ImapSource) -> ssl.SSLContext:
    """Verification against the system CAs or ``ca_file``; ``verify_tls: false`` only when asked."""
    try:
        context = ssl.create_default_context(cafile=str(src.ca_file) if src.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"Source {src.name!r}: cannot load the CA file {src.ca_file}: {exc}.") from None
    if not src.verify_tls:
        log.warning("TLS certificate verification is off for IMAP source %s", src.name)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def check_host(name: str, host: str) -> None:
    """Refuse a host that cannot be a host name or address, before any connection is tried.

    ``mail..example.com`` or a label over 63 characters made the socket layer raise a
    UnicodeError (IDNA) that no error handler expected; ``imaps://...`` or ``host:993``
    would only fail as "not found" after a DNS round trip.
    """
    where = f"Source {name!r}: host {host!r}"
    if not host or host != host.strip() or any(c.isspace() for c in host):
        raise ConfigError(f"{where} is empty or holds spaces; give the server's name, e.g. mail.example.com.")
    if "://" in host or "/" in host:
        raise ConfigError(
            f"{where} is a URL; give only the server's name, e.g. mail.example.com (port and tls are separate keys)."
        )
    try:
        ipaddress.ip_address(host.strip("[]"))
        return  # an IPv4 or IPv6 address
    except ValueError:
        pass
    if ":" in host:
        raise ConfigError(f"{where} holds a port; put the port in port: and only the name in host:.")
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if any(not 1 <= len(label) <= 63 for label in labels) or len(host) > 253:
        raise ConfigError(f"{where} is not a valid host name: each part between dots must have 1 to 63 characters.")
    try:
        host.encode("idna")
    except UnicodeError:
        raise ConfigError(f"{where} is not a valid host name.") from None


def build_imap(src: ImapSource) -> ImapConnector:
    """A connector for every account of ``src``; raises ConfigError for a source that cannot work."""
    check_host(src.name, src.host)
    if src.port is not None and not 1 <= src.port <= 65535:
        raise ConfigError(f"Source {src.name!r}: port {src.port} is not a TCP port (1 to 65535).")
    if src.tls == "none" and not (src.allow_plaintext or is_loopback(src.host)):
        raise ConfigError(
            f"Source {src.name!r}: tls: none would send passwords and mail unencrypted to {src.host}. "
            "Use tls: implicit or starttls, or set allow_plaintext: true if the network is trusted."
        )
    if not src.accounts:
        raise ConfigError(f"Source {src.name!r}: no accounts listed.")
    port = src.port or (993 if src.tls == "implicit" else 143)
    server = ImapServer(
        host=src.host,
        port=port,
        tls=src.tls,
        ssl_context=ssl_context(src) if src.tls != "none" else None,
        timeout_s=src.timeout_s,
    )
    accounts = [_account(src, acc) for acc in src.accounts]
    return ImapConnector(
        src.name,
        server,
        accounts,
        include=src.folders.include,
        exclude=src.folders.exclude,
        batch_size=src.batch_size,
        max_message_bytes=src.max_message_mb * 1024 * 1024,
        retries=src.retries,
    )


def _account(src: ImapSource, acc: ImapAccountConfig) -> ImapAccount:
    given = [x for x in (acc.password_env, acc.password_file, acc.auth) if x is not None]
    where = f"Source {src.name!r}, account {acc.username!r}"
    if len(given) != 1:
        raise ConfigError(f"{where}: give exactly one of password_env, password_file or auth.")
    if acc.auth is not None:
        return ImapAccount(acc.username, oauth2_token=_token_provider(where, acc.auth))
    return ImapAccount(acc.username, password=_password_reader(where, acc))


def _password_reader(where: str, acc: ImapAccountConfig) -> Callable[[], str]:
    def read() -> str:
        if acc.password_env is not None:
            value = os.environ.get(acc.password_env)
            if not value:
                raise AuthError(
                    f"{where}: the environment variable {acc.password_env} holding the password is not set."
                )
            return value
        assert acc.password_file is not None
        return _secret_file(acc.password_file, where, "password")

    return read


def _secret_file(path: Path, where: str, what: str) -> str:
    """The secret in ``path`` (see :func:`~archiver.sources.first_line`); an AuthError for this account otherwise."""
    try:
        secret = first_line(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthError(f"{where}: cannot read the {what} file {path}: {exc}.") from None
    if not secret:
        raise AuthError(f"{where}: the {what} file {path} is empty.")
    return secret


def _token_provider(where: str, auth: Xoauth2Auth) -> Callable[[], str]:
    if auth.token_command:
        return _command_token(where, auth.token_command)
    if not (auth.tenant and auth.client_id):
        raise ConfigError(f"{where}: auth type xoauth2 needs token_command, or tenant and client_id for msal.")
    secrets = [x for x in (auth.client_secret_env, auth.client_secret_file, auth.certificate_file) if x is not None]
    if len(secrets) != 1:
        raise ConfigError(
            f"{where}: auth type xoauth2 needs exactly one of client_secret_env, client_secret_file "
            "or certificate_file."
        )
    provider: TokenProvider | None = None

    def token() -> str:
        nonlocal provider
        if provider is None:
            secret: str | None = None
            certificate = None
            if auth.client_secret_env is not None:
                secret = os.environ.get(auth.client_secret_env)
                if not secret:
                    raise AuthError(f"{where}: the environment variable {auth.client_secret_env} is not set.")
            elif auth.client_secret_file is not None:
                secret = _secret_file(auth.client_secret_file, where, "client secret")
            else:
                assert auth.certificate_file is not None
                certificate = certificate_from_file(str(auth.certificate_file), auth.certificate_thumbprint, None)
            assert auth.tenant and auth.client_id
            provider = TokenProvider(
                MsalSettings(
                    tenant=auth.tenant,
                    client_id=auth.client_id,
                    scopes=(auth.scope,),
                    client_secret=secret,
                    certificate=certificate,
                    authority=auth.authority,
                )
            )
        return provider.token()

    return token


def _command_token(where: str, command: str) -> Callable[[], str]:
    """A provider running ``command`` (no shell) at each login; its stdout is the access token."""
    argv = shlex.split(command)
    if not argv:
        raise ConfigError(f"{where}: token_command is empty.")

    def token() -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=TOKEN_COMMAND_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise TransientError(
                f"{where}: the token command did not finish in {TOKEN_COMMAND_TIMEOUT_S:.0f} s."
            ) from None
        except OSError as exc:
            raise AuthError(f"{where}: cannot run the token command {argv[0]!r}: {exc.strerror}.") from None
        value = done.stdout.strip()
        if done.returncode != 0 or not value:
            # stderr may help; stdout may hold a partial secret and is never shown.
            detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no message"
            raise AuthError(
                f"{where}: the token command {argv[0]!r} failed (exit {done.returncode}, {detail})."
                if done.returncode
                else f"{where}: the token command {argv[0]!r} printed no token."
            )
        return value

    return token
