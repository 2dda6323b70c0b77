"""YAML configuration -> typed, validated settings with clear messages.

A config whose only key is ``archive: {path: DIR}`` is valid: every other setting
has a default.  Unknown keys are refused (a typo must not silently disable a
setting), and every validation problem is reported as ``key.path: what is wrong``.
pydantic does the validation; this module only shapes its errors into sentences.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from archiver import strict_yaml
from archiver.errors import ConfigError, PassphraseError

CONFIG_ENV = "ARCHIVER_CONFIG"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArchiveConfig(_Strict):
    """Where the archive lives and how its key is unlocked."""

    path: Path
    #: environment variable holding the passphrase (checked first).
    passphrase_env: str = "ARCHIVER_PASSPHRASE"
    #: file holding the passphrase (first line), e.g. a systemd credential.
    passphrase_file: Path | None = None
    #: a segment file is closed and a new one started past this size.
    segment_max_mb: int = Field(default=256, ge=1, le=65536)
    #: compress with shared dictionaries of the lines common to many messages, built when the
    #: archive reaches 1,000 messages and again at each 4x growth (archiver/store/dictionary.py).
    compression_dictionary: bool = True

    @field_validator("path", mode="before")
    @classmethod
    def _not_empty(cls, v: Any) -> Any:
        # Path("") would be "." (the config file's folder): an empty value is a mistake.
        if isinstance(v, str) and not v.strip():
            raise ValueError("must not be empty")
        return v


class IngestConfig(_Strict):
    #: parser worker processes; 0 = one per CPU core.
    workers: int = Field(default=0, ge=0, le=64)
    #: messages per store transaction (one fsync group, one checkpoint).
    batch_size: int = Field(default=500, ge=1, le=100_000)
    #: messages larger than this are still stored but not parsed for text beyond headers.
    max_parse_mb: int = Field(default=50, ge=1)
    #: text extracted from one attachment is cut at this many characters.
    max_attachment_text_chars: int = Field(default=200_000, ge=0)


class IndexConfig(_Strict):
    #: tantivy writer memory budget.
    heap_mb: int = Field(default=128, ge=16, le=4096)


class LoggingConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: auto = coloured console on a terminal, JSON lines otherwise.
    format: Literal["auto", "json", "console"] = "auto"


class ClientRule(_Strict):
    """How to recognise one client's mail."""

    name: str
    #: exact addresses (case-insensitive) belonging to the client.
    addresses: list[str] = []
    #: domains (and their subdomains) belonging to the client.
    domains: list[str] = []
    #: matter numbers starting with one of these prefixes belong to this client.
    matter_prefixes: list[str] = []
    #: matters of this client that are known by name (optional).
    matters: list[str] = []

    @field_validator("addresses", "domains")
    @classmethod
    def _lower(cls, v: list[str]) -> list[str]:
        return [x.strip().lower().lstrip("@") for x in v]


class TaggingConfig(_Strict):
    """Rules that file each message under a client and matters."""

    clients: list[ClientRule] = []
    #: regular expressions finding matter numbers in the subject and body.
    #: A named group ``matter`` (or group 1, or the whole match) is the matter number.
    matter_patterns: list[str] = [r"\b\d{5}-\d{4}\b"]
    #: search the body too, not only the subject.
    search_body: bool = True
    #: a header set by the mail system or the sender, ``CLIENT/MATTER`` or ``MATTER``.
    matter_header: str = "X-Archive-Matter"
    #: a reply joins its parent's matters through In-Reply-To/References.
    thread_inheritance: bool = True

    @field_validator("matter_patterns")
    @classmethod
    def _compile(cls, v: list[str]) -> list[str]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
        return v


class FolderFilter(_Strict):
    """Glob patterns selecting folders (`*` and `?` only, so `[Gmail]/Spam` is that folder; case-sensitive except INBOX); exclude wins."""

    include: list[str] = ["*"]
    exclude: list[str] = []


class Xoauth2Auth(_Strict):
    """OAuth2 for IMAP (XOAUTH2) with a token from msal client credentials or a command."""

    type: Literal["xoauth2"]
    tenant: str | None = None
    client_id: str | None = None
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    certificate_file: Path | None = None
    certificate_thumbprint: str | None = None
    authority: str | None = None
    scope: str = "https://outlook.office365.com/.default"
    #: alternative to msal: a command printing an access token on stdout.
    token_command: str | None = None


class ImapAccount(_Strict):
    username: str
    password_env: str | None = None
    password_file: Path | None = None
    auth: Xoauth2Auth | None = None


class ImapSource(_Strict):
    name: str
    type: Literal["imap"]
    host: str
    port: int | None = None
    tls: Literal["implicit", "starttls", "none"] = "implicit"
    allow_plaintext: bool = False
    ca_file: Path | None = None
    verify_tls: bool = True
    folders: FolderFilter = FolderFilter()
    accounts: list[ImapAccount]
    batch_size: int = Field(default=200, ge=1, le=5000)
    max_message_mb: int = Field(default=100, ge=1)
    timeout_s: float = Field(default=60.0, gt=0)
    retries: int = Field(default=5, ge=0)
    #: how often the daemon syncs this source.
    interval: str = "15m"


class FilesSource(_Strict):
    """Mail files on disk (Maildir, mbox, EML, PST), imported on a schedule by the daemon."""

    name: str
    type: Literal["files"]
    paths: list[Path]
    #: messages per committed batch (one transaction, one checkpoint).
    batch_size: int = Field(default=500, ge=1, le=100_000)
    interval: str = "1h"


class MsalAuth(_Strict):
    """OAuth2 client credentials (app-only) through msal: a client secret or a certificate.

    Secrets are never written in the config itself: the secret comes from an
    environment variable or a file, the certificate from a PEM or PFX file.
    """

    type: Literal["oauth"] = "oauth"
    #: directory (tenant) id or domain, e.g. ``contoso.onmicrosoft.com``.
    tenant: str
    client_id: str
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    #: PEM holding the private key (and the certificate), or a .pfx/.p12 file.
    certificate_file: Path | None = None
    #: SHA-1 thumbprint as shown in the app registration; computed from the certificate when omitted.
    certificate_thumbprint: str | None = None
    #: environment variable holding the private key's (or PFX's) password, if it has one.
    certificate_password_env: str | None = None
    #: the identity platform; default ``https://login.microsoftonline.com/{tenant}``.
    authority: str | None = None
    #: the token scope; defaults per connector (Graph or EWS in Exchange Online).
    scope: str | None = None
    #: CA bundle to verify the authority's TLS certificate (private PKI, tests).
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> MsalAuth:
        secret = self.client_secret_env is not None or self.client_secret_file is not None
        if secret == (self.certificate_file is not None):
            raise ValueError("give exactly one credential: client_secret_env/client_secret_file or certificate_file")
        return self


class EwsPasswordAuth(_Strict):
    """NTLM or basic authentication of a service account (Exchange Server on-premises)."""

    type: Literal["ntlm", "basic"]
    #: ``DOMAIN\\user`` or ``user@domain``.
    username: str
    password_env: str | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _one_password(self) -> EwsPasswordAuth:
        if (self.password_env is None) == (self.password_file is None):
            raise ValueError("give exactly one of password_env or password_file")
        return self


class EwsSource(_Strict):
    """Exchange Web Services (Exchange Server on-premises, or Exchange Online until EWS is retired there)."""

    name: str
    type: Literal["ews"]
    #: the EWS URL, e.g. ``https://mail.example.com/EWS/Exchange.asmx``; autodiscover when omitted.
    endpoint: str | None = None
    auth: Annotated[EwsPasswordAuth | MsalAuth, Field(discriminator="type")]
    #: impersonation (ApplicationImpersonation / full_access_as_app) or delegate (Full Access permission).
    access_type: Literal["impersonation", "delegate"] = "impersonation"
    mailboxes: list[str] = Field(min_length=1)
    folders: FolderFilter = FolderFilter()
    #: also archive the online archive mailbox when the server offers one.
    include_archive: bool = True
    #: journaling mailboxes (also synced): only there are Exchange journal reports unwrapped.
    journal_mailboxes: list[str] = []
    #: when given, only journal reports sent from these addresses (the Microsoft Exchange recipient) are unwrapped.
    journal_senders: list[str] = []
    #: changes asked for per SyncFolderItems call (one batch); EWS allows at most 512.
    batch_size: int = Field(default=100, ge=1, le=512)
    #: items per GetItem request when fetching MIME content.
    fetch_chunk: int = Field(default=25, ge=1, le=500)
    #: longest total back-off (seconds) to accept from a throttling server before giving up on a request.
    max_wait_s: float = Field(default=600.0, gt=0)
    timeout_s: float = Field(default=120.0, gt=0)
    interval: str = "15m"


class GraphSource(_Strict):
    """Microsoft Graph mail API (Exchange Online), app-only."""

    name: str
    type: Literal["graph"]
    auth: MsalAuth
    #: Graph's base URL (national clouds use another host).
    graph_url: str = "https://graph.microsoft.com/v1.0"
    #: user principal names or ids of the mailboxes to archive.
    mailboxes: list[str] = []
    #: archive every user member of this group (object id) as well.
    group: str | None = None
    #: journaling mailboxes (also synced): only there are Exchange journal reports unwrapped.
    journal_mailboxes: list[str] = []
    #: when given, only journal reports sent from these addresses (the Microsoft Exchange recipient) are unwrapped.
    journal_senders: list[str] = []
    folders: FolderFilter = FolderFilter()
    #: hidden mail folders hold mail too (e.g. some retention and app folders).
    include_hidden_folders: bool = True
    #: messages per delta page (the ``odata.maxpagesize`` preference); one page is one batch.
    page_size: int = Field(default=100, ge=1, le=1000)
    #: parallel MIME downloads per mailbox; Graph allows 4 concurrent requests per mailbox.
    concurrency: int = Field(default=4, ge=1, le=4)
    timeout_s: float = Field(default=60.0, gt=0)
    #: retries of one request on 429/503/5xx/connection errors.
    retries: int = Field(default=6, ge=0)
    #: a Retry-After longer than this (seconds) fails the folder for this run instead of waiting.
    max_retry_wait_s: float = Field(default=300.0, gt=0)
    interval: str = "15m"

    @model_validator(mode="after")
    def _some_mailboxes(self) -> GraphSource:
        if not self.mailboxes and not self.group and not self.journal_mailboxes:
            raise ValueError("give mailboxes, journal_mailboxes, a group, or several")
        return self


class RetentionConfig(_Strict):
    """Where the retention rules live (see retention_rules.yaml)."""

    #: the rules file; relative to this config file's folder.
    rules_file: Path = Path("retention_rules.yaml")


class NamingConfig(_Strict):
    """File names for exported or filed messages (archiver name, evidence bundles)."""

    #: Python format template; fields: client, matter, date (UTC datetime), from_local, from_domain,
    #: subject_slug, id, message_id_slug, source, folder.
    template: str = "{client}-{matter}/{date:%Y}/{date:%Y%m%dT%H%M%SZ}_{from_local}_{subject_slug}_{id:.12}.eml"
    #: the longest path (characters) a generated name may have.
    max_length: int = Field(default=200, ge=40, le=1000)


class DaemonConfig(_Strict):
    """The scheduling daemon (archiver daemon)."""

    #: health and metrics HTTP endpoint (loopback by default).
    listen: str = "127.0.0.1:9464"
    #: cron expressions (minute hour day month weekday), in UTC.
    retention_schedule: str = "0 3 * * *"
    verify_schedule: str = "0 4 * * 0"
    #: decrypt everything on the scheduled verify (slow on big archives).
    verify_full: bool = False
    #: how long a graceful shutdown may take before the daemon exits anyway.
    shutdown_timeout_s: float = Field(default=60.0, gt=0)
    #: also serve the web UI from the daemon.
    serve_web: bool = False


def check_label_entry(entry: str) -> str:
    """``acme``, ``10234-0001``, ``acme/*`` (or ``acme/``) or ``acme/10234-0001``; a ValueError naming it otherwise.

    Walls and viewers' ``allowed`` lists share this form, so an entry an administrator writes
    the way holds are written (``client/matter``) means what it says instead of silently
    matching nothing (``archiver.web.access`` parses it).
    """
    text = entry.strip()
    head, sep, tail = text.partition("/")
    if not text or (sep and (not head.strip() or "/" in tail)) or "*" in head:
        raise ValueError(f"{entry!r} is not a client or matter label; write CLIENT, MATTER, CLIENT/* or CLIENT/MATTER")
    if "*" in tail and tail.strip() != "*":
        raise ValueError(f"{entry!r}: '*' may only stand alone after CLIENT/ (CLIENT/*)")
    return text


def _check_label_list(values: list[str]) -> list[str]:
    return [check_label_entry(v) for v in values]


class WebUser(_Strict):
    """A web user; password_hash is an argon2 hash (archiver web hash-password)."""

    username: str
    password_hash: str
    role: Literal["admin", "compliance", "auditor", "viewer"]
    groups: list[str] = []
    #: viewers only: the matters (or client/*) they may see.
    allowed: list[str] = []

    @field_validator("allowed")
    @classmethod
    def _labels(cls, v: list[str]) -> list[str]:
        return _check_label_list(v)


class EthicalWall(_Strict):
    """Bars users or groups from clients or matters everywhere in the web UI and API.

    Entries of ``clients`` and ``matters`` take the same forms as ``allowed``: ``CLIENT/*``
    bars a client and ``CLIENT/MATTER`` one client's matter, in either list; a bare entry is a
    client in ``clients`` and a matter (under any client) in ``matters``.
    """

    name: str
    users: list[str] = []
    groups: list[str] = []
    clients: list[str] = []
    matters: list[str] = []

    @field_validator("clients", "matters")
    @classmethod
    def _labels(cls, v: list[str]) -> list[str]:
        return _check_label_list(v)


def _check_proxy(value: str) -> str:
    try:
        ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8); "
            "name the reverse proxies whose X-Forwarded-For header is trusted"
        ) from None
    return value.strip()


class WebConfig(_Strict):
    listen: str = "127.0.0.1:8080"
    users: list[WebUser] = []
    #: YAML file with a `users:` list in the same form (kept out of the main config).
    users_file: Path | None = None
    walls: list[EthicalWall] = []
    #: secret for session cookies; generated into the archive folder when not given.
    session_secret_file: Path | None = None
    session_hours: float = Field(default=8.0, gt=0)
    #: set false only for plain-HTTP development on loopback.
    secure_cookies: bool = True
    #: failed logins per user and client address before a 15-minute lockout.
    max_failed_logins: int = Field(default=5, ge=1)
    #: addresses or networks of reverse proxies whose X-Forwarded-For/-Proto headers are believed;
    #: none by default (the client address is the TCP peer's).
    trusted_proxies: list[str] = []
    #: where evidence bundles exported from the browser are written; a temporary folder when not given.
    export_dir: Path | None = None
    #: exports one user may have queued or running at once.
    max_exports_per_user: int = Field(default=2, ge=1, le=100)
    #: finished bundles are deleted this many hours after they were started.
    export_ttl_hours: float = Field(default=24.0, gt=0)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        return [_check_proxy(x) for x in v]


SourceConfig = Annotated[ImapSource | FilesSource | EwsSource | GraphSource, Field(discriminator="type")]


class Config(_Strict):
    archive: ArchiveConfig
    ingest: IngestConfig = IngestConfig()
    index: IndexConfig = IndexConfig()
    logging: LoggingConfig = LoggingConfig()
    tagging: TaggingConfig = TaggingConfig()
    retention: RetentionConfig = RetentionConfig()
    naming: NamingConfig = NamingConfig()
    daemon: DaemonConfig = DaemonConfig()
    web: WebConfig = WebConfig()
    sources: list[SourceConfig] = []
    #: where this config was loaded from (relative paths resolve against its folder).
    origin: Path | None = None

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, v: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for src in v:
            if src.name in seen:
                raise ValueError(f"two sources are named {src.name!r}; names must be unique")
            seen.add(src.name)
        return v

    def source(self, name: str) -> SourceConfig:
        for src in self.sources:
            if src.name == name:
                return src
        names = ", ".join(s.name for s in self.sources) or "none configured"
        raise ConfigError(f"No source named {name!r} in the config (sources: {names}).")


def _format_validation_error(path: Path | None, exc: ValidationError) -> str:
    where = f"{path}" if path else "config"
    lines = [f"The configuration in {where} is invalid:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against config.example.yaml)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"  {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def _paths_with_nul(value: Any, loc: str) -> Iterator[str]:
    """Where (``sources.0.paths.1``) a path holds a NUL character ("\\0" in YAML).

    The operating system cannot take such a path: every file call on it raises ValueError
    ("embedded null byte"), a traceback in whatever command touches it first.
    """
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _paths_with_nul(getattr(value, name), f"{loc}.{name}" if loc else name)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _paths_with_nul(item, f"{loc}.{i}")
    elif isinstance(value, Path) and "\0" in str(value):
        yield loc


def parse_config(data: Any, origin: Path | None = None) -> Config:
    """Validate an already-loaded mapping; relative paths resolve against ``origin``'s folder."""
    if not isinstance(data, dict):
        raise ConfigError(f"The configuration in {origin or 'config'} must be a mapping with an 'archive' key.")
    base = origin.parent if origin else Path.cwd()
    try:
        cfg = Config.model_validate({**data, "origin": origin})
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(origin, exc)) from None
    bad = list(_paths_with_nul(cfg, ""))
    if bad:
        lines = [f"  {loc}: a path cannot contain a NUL character" for loc in bad]
        raise ConfigError("\n".join([f"The configuration in {origin or 'config'} is invalid:", *lines]))

    def anchored(p: Path) -> Path:
        """``~`` expanded, and a relative path taken relative to the config file's folder."""
        p = p.expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    archive = cfg.archive
    updates: dict[str, Any] = {"path": anchored(archive.path)}
    if archive.passphrase_file is not None:
        updates["passphrase_file"] = anchored(archive.passphrase_file)
    cfg = cfg.model_copy(update={"archive": archive.model_copy(update=updates)})
    cfg = cfg.model_copy(
        update={"retention": cfg.retention.model_copy(update={"rules_file": anchored(cfg.retention.rules_file)})}
    )
    for key in ("users_file", "session_secret_file", "export_dir"):
        value = getattr(cfg.web, key)
        if value is not None:
            cfg = cfg.model_copy(update={"web": cfg.web.model_copy(update={key: anchored(value)})})
    # Relative paths of file sources are relative to the config file, not the daemon's folder.
    sources = [
        s.model_copy(update={"paths": [anchored(p) for p in s.paths]}) if isinstance(s, FilesSource) else s
        for s in cfg.sources
    ]
    if sources != cfg.sources:
        cfg = cfg.model_copy(update={"sources": sources})
    return cfg


def parse_listen(text: str, key: str = "daemon.listen") -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``; port 0 picks a free port."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\s\[\]]+):(\d+)", str(text).strip())
    if not m:
        raise ConfigError(f"{key}: {text!r} is not HOST:PORT (e.g. 127.0.0.1:9464 or [::1]:9464).")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise ConfigError(f"{key}: port {port} is out of range (0-65535).")
    return host, port


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Load the config from ``path`` or ``$ARCHIVER_CONFIG``; clear errors for every mistake."""
    if path is None:
        env = os.environ.get(CONFIG_ENV)
        if not env:
            raise ConfigError(
                f"No configuration given: pass --config FILE or set {CONFIG_ENV}. "
                "config.example.yaml documents every key."
            )
        path = env
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Configuration file {p} does not exist.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read configuration file {p}: {exc.strerror}.") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"Configuration file {p} {_not_utf8(exc)}; save it as UTF-8.") from None
    try:
        data = strict_yaml.load(text)  # a key given twice (two `sources:`) is refused, not silently dropped
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"Configuration file {p} is not valid YAML{where}: {problem}.") from None
    return parse_config(data, p.resolve())


def _not_utf8(exc: UnicodeDecodeError) -> str:
    """The end of a sentence saying a file is not UTF-8, and where; a UTF-16 byte order mark is named."""
    hint = "it looks like UTF-16; " if exc.object[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
    return f"is not UTF-8 text ({hint}byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"


def read_passphrase(cfg: ArchiveConfig) -> str:
    """The archive passphrase from the environment or the passphrase file."""
    value = os.environ.get(cfg.passphrase_env)
    if value:
        try:
            value.encode("utf-8")  # bytes that are not UTF-8 arrive as surrogates; the key derivation needs UTF-8
        except UnicodeEncodeError:
            raise PassphraseError(
                f"The environment variable {cfg.passphrase_env} is not UTF-8 text; set it to the passphrase as UTF-8."
            ) from None
        return value
    if cfg.passphrase_file is not None:
        try:
            first = cfg.passphrase_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise PassphraseError(f"Cannot read the passphrase file {cfg.passphrase_file}: {exc.strerror}.") from None
        except UnicodeDecodeError as exc:
            raise PassphraseError(
                f"The passphrase file {cfg.passphrase_file} {_not_utf8(exc)}; write the passphrase as UTF-8 text."
            ) from None
        if first and first[0]:
            return first[0]
    raise PassphraseError(
        f"No passphrase: set the environment variable {cfg.passphrase_env} or archive.passphrase_file in the config."
    )
