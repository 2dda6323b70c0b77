"""A real, throwaway Dovecot IMAP server on a loopback port, for tests and benchmarks.

Everything lives under one temporary directory: the config, the passwd-file of
users, their Maildirs, a throwaway CA and server certificate (implicit TLS on
``tls_port``, STARTTLS on ``port``), Dovecot's runtime (base_dir), state and log.  Users
authenticate with PLAIN passwords, or with XOAUTH2 / OAUTHBEARER bearer tokens:
JWTs that Dovecot's oauth2 passdb validates locally against an RSA public key
this module generates (``introspection_mode = local``), so no identity provider
is needed.

Running as root (as in CI containers): Dovecot refuses to run its login processes
as root and refuses mail users with UID 0, so the login processes run as
``dovenull``, internal ones as ``dovecot`` and mail is owned by the ``mail`` user;
the directory tree is made traversable for them.  As an ordinary user everything
runs as that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DOVECOT = shutil.which("dovecot") or next(
    (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.path.exists(p)), None
)
INSTALL_HINT = "Dovecot is not installed: install dovecot-imapd (apt-get install dovecot-imapd) to run IMAP tests."

_CONF = """\
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{root}/tls/server.pem
ssl_key = <{root}/tls/server.key
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
last_valid_uid = 0
mail_location = maildir:~/Maildir
mail_fsync = never
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/oauth2.conf.ext
}}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
"""

_OAUTH2 = """\
introspection_mode = local
local_validation_key_dict = fs:posix:prefix={root}/keys/
username_attribute = sub
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_certificates(folder: Path) -> Path:
    """A throwaway CA and a server certificate for localhost and 127.0.0.1; returns the CA file."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "archiver test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(cert.public_bytes(pem))
    (folder / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (folder / "server.key").chmod(0o600)
    return folder / "ca.pem"


def _children(pid: int) -> list[int]:
    """Pids of the processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command may hold spaces and parentheses: the fields after the last ")" are fixed.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


class Dovecot:
    """Start with :meth:`start`, stop with :meth:`stop` (by pid); users via :meth:`add_user`."""

    KEY_ID = "testkey"

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        if DOVECOT is None:
            raise FileNotFoundError(INSTALL_HINT)
        # Dovecot's unprivileged processes must reach this directory: its parents must be traversable.
        self.root = Path(root or tempfile.mkdtemp(prefix="dovecot-test-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.port = port or free_port()
        #: implicit TLS (imaps); the plain port offers STARTTLS.  ``ca_file`` verifies both.
        self.tls_port = free_port()
        self.host = "127.0.0.1"
        self._proc: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            mail = pwd.getpwnam("mail")
            self.mail_uid, self.mail_gid = mail.pw_uid, mail.pw_gid
            internal, login = "dovecot", "dovenull"
        else:
            self.mail_uid, self.mail_gid = os.getuid(), os.getgid()
            internal = login = pwd.getpwuid(os.getuid()).pw_name
        for d in ("run", "state", "home", "keys", "users", "tls"):
            (self.root / d).mkdir(exist_ok=True)
            (self.root / d).chmod(0o755)
        self.conf = self.root / "dovecot.conf"
        self.conf.write_text(
            _CONF.format(
                root=self.root,
                port=self.port,
                tls_port=self.tls_port,
                internal_user=internal,
                internal_group=internal,
                login_user=login,
            )
        )
        (self.root / "oauth2.conf.ext").write_text(_OAUTH2.format(root=self.root))
        self.ca_file = _make_certificates(self.root / "tls")
        self._private_key: object | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        assert DOVECOT is not None
        self._proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "stderr.log", "ab"),  # noqa: SIM115 - kept open by the child
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dovecot exited at start-up:\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=1) as s:
                if s.recv(100).startswith(b"* OK"):
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not accept connections within {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the master by pid and wait, so the port is free when this returns."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        # Dovecot's master leaves running imap sessions alive when it stops; a restarted or
        # crashed server drops them, so end the children it started too (by pid).
        children = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for name in ("dovecot.log", "stderr.log"):
            p = self.root / name
            if p.exists():
                parts.extend(p.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(parts)

    # -- users and mail ---------------------------------------------------------------------------

    def add_user(self, username: str, password: str) -> None:
        """Add a user: one passwd-file per user, because Dovecot checks a changed file at most once a second."""
        home = self.home(username)
        home.mkdir(parents=True, exist_ok=True)
        self._own(home)
        line = f"{username}:{{PLAIN}}{password}:{self.mail_uid}:{self.mail_gid}::{home}::\n"
        (self.root / "users" / username).write_text(line, encoding="utf-8")

    def home(self, username: str) -> Path:
        return self.root / "home" / username

    def maildir(self, username: str, folder: str = "INBOX") -> Path:
        """The Maildir++ directory of ``folder`` (``/`` separated) of a user."""
        base = self.home(username) / "Maildir"
        if folder.upper() == "INBOX":
            return base
        return base / ("." + folder.replace("/", "."))

    def deliver(self, username: str, folder: str, messages: list[bytes], seen: bool = False) -> None:
        """Write messages straight into a Maildir (fast for thousands); Dovecot assigns UIDs on next look."""
        md = self.maildir(username, folder)
        for sub in ("cur", "new", "tmp"):
            (md / sub).mkdir(parents=True, exist_ok=True)
        host = socket.gethostname()
        stamp = time.time_ns()
        for i, data in enumerate(messages):
            name = f"{stamp}.M{i}P{os.getpid()}.{host}"
            tmp = md / "tmp" / name
            tmp.write_bytes(data)
            dest = md / "cur" / f"{name}:2,S" if seen else md / "new" / name
            os.rename(tmp, dest)
        self._own(self.home(username))

    def _own(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        for dirpath, _dirs, filenames in os.walk(path):
            os.chown(dirpath, self.mail_uid, self.mail_gid)
            for n in filenames:
                os.chown(os.path.join(dirpath, n), self.mail_uid, self.mail_gid)

    # -- OAuth2 -----------------------------------------------------------------------------------

    def enable_oauth2(self) -> None:
        """Create the RSA key whose public half Dovecot uses to validate bearer tokens."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        kdir = self.root / "keys" / "default" / "RS256"
        kdir.mkdir(parents=True, exist_ok=True)
        (kdir / self.KEY_ID).write_bytes(pem)
        for p in (self.root / "keys", self.root / "keys" / "default", kdir):
            p.chmod(0o755)
        (kdir / self.KEY_ID).chmod(0o644)
        self._private_key = key

    def token(self, username: str, lifetime_s: int = 600, key: object | None = None) -> str:
        """A signed JWT access token for ``username`` (signed with another key when ``key`` is given)."""
        import jwt

        signer = key or self._private_key
        if signer is None:
            raise RuntimeError("call enable_oauth2() first")
        now = int(time.time())
        return jwt.encode(
            {"sub": username, "iat": now, "exp": now + lifetime_s},
            signer,  # type: ignore[arg-type]
            algorithm="RS256",
            headers={"kid": self.KEY_ID},
        )


@contextlib.contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    server = Dovecot()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
