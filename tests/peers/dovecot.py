"""A private Dovecot POP3 server for tests: its own config, ports, users, Maildirs and TLS files.

Usage::

    with DovecotServer(tmp_path) as server:          # cert="valid" by default
        server.add_user("alice", "secret")
        server.deliver("alice", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
        poplib.POP3_SSL(server.host, server.pop3s_port,
                        context=ssl.create_default_context(cafile=server.ca_file))

What a POP3 client sees (Dovecot 2.3.19, as configured in ``dovecot_config.py``):

- The plain port offers STLS (unless ``plain_pop3_stls=False``); the POP3S port is implicit
  TLS. Both take USER/PASS and AUTH PLAIN/LOGIN; a wrong password or unknown user gets
  ``-ERR [AUTH] Authentication failed.`` after about 0.5 s.
- ``RETR`` always sends CRLF line ends: a message stored with bare LFs comes back with each LF
  turned into CRLF (a stored CRLF stays one CRLF), and ``LIST`` reports that CRLF size. So
  "byte-exact" import means: exact for CRLF messages, and LF to CRLF for LF-only ones. The
  terminating ``.`` line and dot-stuffing are protocol, undone by the client.
- ``UIDL`` is ``%08Xu%08Xv``: the Maildir UID then the mailbox's UIDVALIDITY, as 16
  lowercase hex digits (e.g. ``000000016b077951``; Dovecot's ``%X`` is lowercase).
  It is stable across sessions and restarts (kept in ``dovecot-uidlist`` in the Maildir),
  and UIDs follow delivery order. Wiping that file (or the whole Maildir) would renumber.
- ``DELE`` takes effect only at ``QUIT`` (RFC 1939 UPDATE state); a connection dropped
  without QUIT deletes nothing.

Files live under a fresh ``/dev/shm/rm-dovecot-*`` folder (``/tmp`` where there is no
``/dev/shm``) rather than under ``tmp_path``: pytest's base folder is private to root (mode
0700) while the mail processes run as an unprivileged user that must reach the Maildirs; the
socket paths must stay short; and on a disk-backed ``/tmp`` creating a file can take half a
millisecond, against 10 microseconds on tmpfs (10,000 deliveries: 5 s against 0.3 s). A
symlink of the same name in ``tmp_path`` points there; ``close()`` copies the log beside it
(``tmp_path/rm-dovecot-*.log``) and removes the folder.

As root, mail belongs to ``nobody:nogroup`` (Dovecot refuses uid 0 for mail), Dovecot's own
processes run as Debian's ``dovecot`` and ``dovenull`` accounts; as an ordinary user, everything
runs as that user.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType

from tests.peers.certs import CERT_KINDS, CertKind, write_tls_files
from tests.peers.dovecot_config import (
    find_dovecot_binary,
    internal_gid,
    make_layout,
    make_scratch_folder,
    render_auth_dict_config,
    render_config,
)
from tests.peers.ports import free_ports

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0
# Names become file names and Dovecot %u expansions: keep them to a safe alphabet.
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}\Z")
# The "host" part of Maildir file names (see deliver()).
_MAILDIR_HOST = "recruitmail-test"


class DovecotServer:
    """One private ``dovecot -F`` on 127.0.0.1, with a plain POP3 port and a POP3S port.

    Contract: the constructor prepares files but starts nothing; ``start()`` returns only
    once both ports answer with a POP3 greeting, and raises ``RuntimeError`` (with the log
    tail) otherwise. ``stop()`` ends the daemon but keeps users, mail and ports, so
    ``start()`` may run again; ``close()`` (also ``__exit__``) stops and deletes everything.
    ``add_user`` and ``deliver`` work whether or not the daemon runs.
    """

    host = "127.0.0.1"

    def __init__(
        self, tmp_path: Path, *, cert: CertKind = "valid", plain_pop3_stls: bool = True
    ) -> None:
        if cert not in CERT_KINDS:
            raise ValueError(f"unknown certificate kind {cert!r}; expected one of {CERT_KINDS}")
        self.cert: CertKind = cert
        self.plain_pop3_stls = plain_pop3_stls
        # Fail here, before any file is made, so a missing install reads as one clear error.
        self._binary = find_dovecot_binary()
        root = make_scratch_folder()
        self._resources = _Resources(root)
        # Whatever happens to this object (a crashed fixture, interpreter exit), the daemon
        # is stopped and the folder removed.
        self._finalizer = weakref.finalize(self, self._resources.release)
        self._layout = make_layout(root)
        self._prepare_files()
        self.ca_file: Path = write_tls_files(self._layout.tls_dir, cert).ca_file
        self.pop3_port, self.pop3s_port = free_ports(self.host, 2)
        self._has_started = False
        self._users: dict[str, Path] = {}
        self._name_lock = threading.Lock()
        self._last_name_time = 0.0
        self._sequence = itertools.count()
        # For whoever debugs a failed test: tmp_path/rm-dovecot-XXXX points at the files while
        # the server lives, and tmp_path/rm-dovecot-XXXX.log keeps the log after close().
        tmp_path.mkdir(parents=True, exist_ok=True)
        self._debug_link = tmp_path / root.name
        self._debug_link.symlink_to(root)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the daemon started by ``start()`` is alive."""
        process = self._resources.process
        return process is not None and process.poll() is None

    def start(self) -> DovecotServer:
        """Start the daemon and wait until both ports greet; return ``self``."""
        if self.running:
            raise RuntimeError("this DovecotServer is already running")
        self._check_open()
        for _attempt in range(3):
            self._layout.config_file.write_text(
                render_config(
                    self._layout,
                    host=self.host,
                    pop3_port=self.pop3_port,
                    pop3s_port=self.pop3s_port,
                    plain_pop3_stls=self.plain_pop3_stls,
                )
            )
            self._launch()
            try:
                self._wait_until_ready()
            except _PortTaken:
                self.stop()
                if self._has_started:
                    raise RuntimeError(
                        f"port {self.pop3_port} or {self.pop3s_port} was taken while stopped"
                    ) from None
                # Another process took a port between free_ports() and Dovecot's bind().
                self.pop3_port, self.pop3s_port = free_ports(self.host, 2)
                continue
            self._has_started = True
            return self
        raise RuntimeError(f"could not find free ports for dovecot\n{self._log_tail()}")

    def stop(self) -> None:
        """Stop the daemon: SIGTERM to its process group, SIGKILL after 10 s; idempotent."""
        self._resources.stop_process()

    def close(self) -> None:
        """Stop the daemon, keep its log in ``tmp_path``, delete its folder; idempotent."""
        if not self._finalizer.alive:
            return
        self.stop()
        try:
            self._debug_link.with_name(f"{self._debug_link.name}.log").write_text(self.log_text())
            self._debug_link.unlink(missing_ok=True)
        except OSError:
            pass  # tmp_path may be gone already; the log is a convenience
        self._finalizer()

    def __enter__(self) -> DovecotServer:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- users and mail --------------------------------------------------------------------

    def add_user(self, name: str, password: str) -> None:
        """Create user ``name`` with an empty Maildir, or give an existing user a new password.

        Takes effect at the very next login, also while running: every login reads the
        user's passdb file afresh. Raises ``ValueError`` for a name outside
        ``[A-Za-z0-9][A-Za-z0-9._@+-]*`` or a password with CR, LF or NUL (POP3 cannot send
        those).
        """
        self._check_open()
        if not _USER_NAME.match(name):
            raise ValueError(f"user name {name!r} must match {_USER_NAME.pattern}")
        if any(character in password for character in "\r\n\0"):
            raise ValueError("a POP3 password cannot contain CR, LF or NUL")
        layout = self._layout
        maildir = layout.maildir(name)
        if name not in self._users:
            for folder in (maildir.parent, maildir, *(maildir / sub for sub in MAILDIR_SUBDIRS)):
                folder.mkdir(mode=0o700, exist_ok=True)
                os.chown(folder, layout.mail_uid, layout.mail_gid)
        record = json.dumps({"password": "{PLAIN}" + password}).encode()
        # Written beside, then renamed: a login never reads half a file.
        staging = layout.auth_dir / "staging" / f"{name}.{next(self._sequence)}"
        staging.write_bytes(record)
        staging.chmod(0o640)
        os.chown(staging, os.getuid(), internal_gid(layout))
        os.replace(staging, layout.password_file(name))
        self._users[name] = maildir

    def deliver(self, user: str, raw: bytes, *, mtime: float | None = None) -> str:
        """Put ``raw`` (stored byte for byte) into ``user``'s Maildir ``new/``; return its name.

        Maildir's delivery protocol: write into ``tmp/``, then rename into ``new/``, so
        Dovecot never sees a partial file. The name is unique and sorts in delivery order,
        which is also the order in which Dovecot hands out UIDs. Its ``,S=`` (file size) and
        ``,W=`` (size with CRLF line ends) parts let Dovecot answer ``STAT`` and ``LIST``
        without reading every file, as its own LDA's names do. ``mtime`` (seconds since the
        epoch) sets the file's modification time, which Dovecot reports as the received date.
        """
        maildir = self._maildir_of(user)
        crlf_size = len(raw) + raw.count(b"\n") - raw.count(b"\r\n")
        with self._name_lock:
            # Strictly increasing, even for many deliveries within one microsecond.
            now = max(time.time(), self._last_name_time + 1e-6)
            self._last_name_time = now
            sequence = next(self._sequence)
        seconds, microseconds = divmod(round(now * 1_000_000), 1_000_000)
        name = (
            f"{seconds}.M{microseconds:06d}P{os.getpid()}Q{sequence}.{_MAILDIR_HOST}"
            f",S={len(raw)},W={crlf_size}"
        )
        staging = maildir / "tmp" / name
        descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchown(descriptor, self._layout.mail_uid, self._layout.mail_gid)
            remaining = memoryview(raw)
            while remaining:
                remaining = remaining[os.write(descriptor, remaining) :]
        finally:
            os.close(descriptor)
        if mtime is not None:
            os.utime(staging, (mtime, mtime))
        os.rename(staging, maildir / "new" / name)
        return name

    def messages(self, user: str) -> list[bytes]:
        """The raw bytes of every message of ``user`` still on the server, in delivery order.

        Reads ``new/`` and ``cur/`` (Dovecot moves files from one to the other and appends
        ``:2,<flags>`` to their names). A message is gone only after a session that DELE'd
        it ended with QUIT.
        """
        maildir = self._maildir_of(user)
        for _attempt in range(5):
            paths = [path for sub in ("new", "cur") for path in (maildir / sub).iterdir()]
            paths.sort(key=lambda path: path.name.split(":", 1)[0])
            try:
                return [path.read_bytes() for path in paths]
            except FileNotFoundError:
                continue  # a running session renamed new/ -> cur/ meanwhile: list again
        raise RuntimeError(f"the Maildir of {user!r} kept changing while being read")

    def log_text(self) -> str:
        """Dovecot's own log, after anything it printed before the log was open."""
        parts = []
        for path in (self._layout.stderr_file, self._layout.log_file):
            try:
                parts.append(path.read_text(errors="replace"))
            except FileNotFoundError:
                continue
        return "".join(parts)

    # -- internals -------------------------------------------------------------------------

    def _maildir_of(self, user: str) -> Path:
        self._check_open()
        try:
            return self._users[user]
        except KeyError:
            raise ValueError(f"no user {user!r} on this server; call add_user() first") from None

    def _check_open(self) -> None:
        if not self._finalizer.alive:
            raise RuntimeError("this DovecotServer was closed")

    def _prepare_files(self) -> None:
        layout = self._layout
        # Every account Dovecot uses must be able to walk down to its files.
        layout.root.chmod(0o755)
        layout.state_dir.mkdir(mode=0o750)
        layout.mail_root.mkdir(mode=0o755)
        for folder in (layout.auth_dir, layout.auth_dir / "passdb", layout.auth_dir / "staging"):
            # The auth process (the internal user) reads the password files.
            folder.mkdir(mode=0o750)
            os.chown(folder, os.getuid(), internal_gid(layout))
        layout.auth_dict_config_file.write_text(render_auth_dict_config(layout))

    def _launch(self) -> None:
        command = [str(self._binary), "-F", "-c", str(self._layout.config_file)]
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            # Dovecot dies with the test process, even one killed with SIGKILL. Only from the
            # main thread: the signal fires when the *thread* that started it ends.
            command = [setpriv, "--pdeathsig", "TERM", *command]
        with self._layout.stderr_file.open("ab") as stderr:
            # Its own session, so stop() can end every process of this instance and nothing
            # else, and so a Ctrl-C in the terminal reaches pytest only.
            self._resources.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_until_ready(self) -> None:
        process = self._resources.process
        assert process is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        # Only to see the greeting; whether the certificate verifies is for the tests to say.
        probe_context = ssl.create_default_context()
        probe_context.check_hostname = False
        probe_context.verify_mode = ssl.CERT_NONE
        while True:
            status = process.poll()
            if status is not None:
                if "Address already in use" in self.log_text():
                    raise _PortTaken
                raise RuntimeError(
                    f"dovecot exited with status {status} while starting\n{self._log_tail()}"
                )
            if _greets(self.host, self.pop3_port, None) and _greets(
                self.host, self.pop3s_port, probe_context
            ):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"dovecot did not greet on {self.host}:{self.pop3_port} and "
                    f":{self.pop3s_port} within {START_TIMEOUT_SECONDS:.0f} s\n{self._log_tail()}"
                )
            time.sleep(0.02)

    def _log_tail(self, lines: int = 40) -> str:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return f"--- last lines of the dovecot log ({self._layout.log_file}) ---\n{tail}"


MAILDIR_SUBDIRS = ("tmp", "new", "cur")


class _PortTaken(Exception):
    """Dovecot could not bind a port chosen for it."""


class _Resources:
    """What must be released even if the server object is dropped: the process, the folder.

    Kept apart from ``DovecotServer`` so ``weakref.finalize`` can hold it without keeping the
    server alive.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.process: subprocess.Popen[bytes] | None = None

    def stop_process(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        # The whole group, which is this instance and nothing else (start_new_session made
        # the master's pid its group id, and the master is not reaped yet, so the id cannot
        # have been reused). SIGTERM to the master alone also works but takes a second, as
        # it waits for its children; signalled together they all end at once.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def release(self) -> None:
        self.stop_process()
        shutil.rmtree(self.root, ignore_errors=True)


def _greets(host: str, port: int, context: ssl.SSLContext | None) -> bool:
    """True if ``host:port`` answers with a POP3 ``+OK`` greeting within a second or two."""
    try:
        with socket.create_connection((host, port), timeout=2) as raw_socket:
            if context is None:
                greeting = raw_socket.recv(512)
                raw_socket.sendall(b"QUIT\r\n")
            else:
                with context.wrap_socket(raw_socket, server_hostname=host) as tls_socket:
                    greeting = tls_socket.recv(512)
                    tls_socket.sendall(b"QUIT\r\n")
    except OSError:  # refused, timed out, or a TLS error while the login process starts
        return False
    return greeting.startswith(b"+OK")
