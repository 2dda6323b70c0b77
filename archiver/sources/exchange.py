"""Build the Exchange connectors (EWS, Graph) from ``type: ews`` and ``type: graph`` sources.

Secrets (passwords, client secrets, certificate passwords) are read here from
the environment variable or file the config names, at build time, and handed
to the connector; they are never logged or put in a message.  A missing or
unreadable secret is a :class:`ConfigError` naming the source and the key, so
``archiver sync`` stops with a sentence rather than failing every mailbox.
The same goes for a CA file that does not exist and a ``graph_url`` that is
not https (the bearer token must never travel in clear text).

Journal reports are unwrapped only in the mailboxes a source lists under
``journal_mailboxes`` (and, when ``journal_senders`` is given, only reports
from those senders): anywhere else a message carrying the journal header is
archived exactly as received (``connectors.journal_report`` says why).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from archiver.config import EwsPasswordAuth, EwsSource, GraphSource, MsalAuth, SourceConfig
from archiver.errors import ConfigError
from archiver.sources import first_line
from connectors.base import Connector
from connectors.errors import AuthError
from connectors.ews import EWS_ONLINE_SCOPE, EwsConnector, EwsSettings
from connectors.graph import GRAPH_SCOPE, GraphConnector, GraphSettings
from connectors.msauth import CertificateCredential, MsalSettings, TokenProvider, certificate_from_file


def build_ews(src: SourceConfig) -> Connector:
    """An EWS connector for ``src`` (an :class:`EwsSource`)."""
    if not isinstance(src, EwsSource):
        raise ConfigError(f"Source {src.name!r} is not an EWS source.")
    common = {
        "name": src.name,
        "mailboxes": tuple(src.mailboxes),
        "endpoint": src.endpoint,
        "access_type": src.access_type,
        "include": tuple(src.folders.include),
        "exclude": tuple(src.folders.exclude),
        "include_archive": src.include_archive,
        "batch_size": src.batch_size,
        "fetch_chunk": src.fetch_chunk,
        "max_wait": src.max_wait_s,
        "timeout": src.timeout_s,
        "journal_mailboxes": configured_journal_mailboxes(src),
        "journal_senders": configured_journal_senders(src),
    }
    auth = src.auth
    if isinstance(auth, EwsPasswordAuth):
        password = _secret(src.name, "auth.password", auth.password_env, auth.password_file)
        settings = EwsSettings(auth=auth.type, username=auth.username, password=password, **common)  # type: ignore[arg-type]
        return EwsConnector(settings)
    tokens = TokenProvider(_msal_settings(src.name, auth, EWS_ONLINE_SCOPE))
    return EwsConnector(EwsSettings(auth="oauth", **common), tokens)  # type: ignore[arg-type]


def build_graph(src: SourceConfig) -> Connector:
    """A Graph connector for ``src`` (a :class:`GraphSource`)."""
    if not isinstance(src, GraphSource):
        raise ConfigError(f"Source {src.name!r} is not a Graph source.")
    if urlsplit(src.graph_url).scheme.lower() != "https":
        raise ConfigError(
            f"Source {src.name!r}: graph_url {src.graph_url!r} must be an https URL (the access token is sent there)."
        )
    settings = GraphSettings(
        name=src.name,
        mailboxes=tuple(src.mailboxes),
        group=src.group,
        graph_url=src.graph_url,
        include=tuple(src.folders.include),
        exclude=tuple(src.folders.exclude),
        include_hidden_folders=src.include_hidden_folders,
        page_size=src.page_size,
        concurrency=src.concurrency,
        timeout=src.timeout_s,
        retries=src.retries,
        max_retry_wait=src.max_retry_wait_s,
        verify=str(src.auth.ca_file) if src.auth.ca_file else True,
        journal_mailboxes=configured_journal_mailboxes(src),
        journal_senders=configured_journal_senders(src),
    )
    return GraphConnector(settings, TokenProvider(_msal_settings(src.name, src.auth, GRAPH_SCOPE)))


def configured_journal_mailboxes(src: EwsSource | GraphSource) -> tuple[str, ...]:
    """The source's ``journal_mailboxes``: the only mailboxes whose journal reports are unwrapped
    (none by default: a journal header elsewhere is the sender's word, and the message is kept as received)."""
    return tuple(m.strip() for m in src.journal_mailboxes if m.strip())


def configured_journal_senders(src: EwsSource | GraphSource) -> tuple[str, ...]:
    """The source's ``journal_senders``: when given, only reports from these addresses are unwrapped."""
    return tuple(m.strip().lower() for m in src.journal_senders if m.strip())


def _check_ca_file(name: str, ca_file: Path | None) -> None:
    """Called once, by :func:`_msal_settings`: every EWS OAuth and Graph source goes through it
    (and Graph's own requests use the same ``auth.ca_file``)."""
    if ca_file is not None and not ca_file.is_file():
        raise ConfigError(f"Source {name!r}: auth.ca_file {ca_file} does not exist or is not a file.")


def _msal_settings(name: str, auth: MsalAuth, default_scope: str) -> MsalSettings:
    _check_ca_file(name, auth.ca_file)
    secret: str | None = None
    certificate: CertificateCredential | None = None
    if auth.certificate_file is not None:
        password = (
            _secret(name, "auth.certificate_password", auth.certificate_password_env, None)
            if auth.certificate_password_env
            else None
        )
        if not auth.certificate_file.is_file():
            raise ConfigError(f"Source {name!r}: auth.certificate_file {auth.certificate_file} does not exist.")
        try:
            certificate = certificate_from_file(str(auth.certificate_file), auth.certificate_thumbprint, password)
        except AuthError as exc:
            raise ConfigError(f"Source {name!r}: {exc}") from None
    else:
        secret = _secret(name, "auth.client_secret", auth.client_secret_env, auth.client_secret_file)
    return MsalSettings(
        tenant=auth.tenant,
        client_id=auth.client_id,
        scopes=(auth.scope or default_scope,),
        client_secret=secret,
        certificate=certificate,
        authority=auth.authority,
        verify=str(auth.ca_file) if auth.ca_file else True,
    )


def _secret(name: str, what: str, env: str | None, file: Path | None) -> str:
    """The secret from ``env`` (checked first) or the first line of ``file``."""
    if env:
        value = os.environ.get(env)
        if value:
            return value
        if file is None:
            raise ConfigError(f"Source {name!r}: {what} is read from the environment variable {env}, which is not set.")
    if file is not None:
        try:
            secret = first_line(file)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"Source {name!r}: cannot read {what} from {file}: {reason}.") from None
        if secret:
            return secret
        raise ConfigError(f"Source {name!r}: the file {file} for {what} is empty.")
    raise ConfigError(f"Source {name!r}: no {what} configured (give an environment variable or a file).")
