"""Pytest fixtures for the fault-injecting POP3 server (``tests.peers.faultpop3``).

- ``fault_pop3``: a plain-text server on 127.0.0.1 with the account alice / secret and an empty
  mailbox; a test adds messages and switches faults on through ``fault_pop3.faults``.
- ``fault_pop3_factory``: ``make(cert_kind=None, implicit_tls=False, **server_kwargs)`` starts
  another server; with ``cert_kind`` ("valid", "expired", "wrong_host", "self_signed", from
  ``tests.peers.certs``) it speaks TLS, as STLS or, with ``implicit_tls``, from the first
  byte. The test CA that verifies "valid" is ``server.ca_file``.

Every server started is stopped at the end of the test.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.certs import CertKind, write_tls_files
from tests.peers.faultpop3 import FaultPop3Server

FaultPop3Factory = Callable[..., FaultPop3Server]


@pytest.fixture
def fault_pop3_factory(tmp_path: Path) -> Iterator[FaultPop3Factory]:
    """Start fault servers on demand; stop them all afterwards."""
    servers: list[FaultPop3Server] = []

    def make(
        *, cert_kind: CertKind | None = None, implicit_tls: bool = False, **kwargs: Any
    ) -> FaultPop3Server:
        ca_file: str | None = None
        if cert_kind is not None:
            files = write_tls_files(tmp_path / f"fault-pop3-{len(servers)}-{cert_kind}", cert_kind)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(files.cert_file, files.key_file)
            kwargs["tls_context"] = context
            ca_file = str(files.ca_file)
        server = FaultPop3Server(implicit_tls=implicit_tls, **kwargs)
        server.ca_file = ca_file
        servers.append(server.start())
        if cert_kind is not None and not implicit_tls:
            server.faults.advertise_stls = True
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def fault_pop3(fault_pop3_factory: FaultPop3Factory) -> FaultPop3Server:
    """A started plain-text fault server (alice / secret, empty mailbox)."""
    return fault_pop3_factory()
