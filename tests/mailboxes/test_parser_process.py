"""The import's parser process (``mailboxes.parser_process``): the same result as parsing in the
worker, byte-exact raw files, and a poll that carries on in-process when the child fails.

Small polls parse in-process (``PARSER_PROCESS_FROM``); these tests lower the bar to one
message so that every poll here uses the child.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage
from django.db import connection
from django.test import override_settings

from mailboxes import poll_fetch
from mailboxes.composing import new_message_id
from mailboxes.importer import mailbox_poll
from mailboxes.mailstore import raw_read
from mailboxes.models import (
    Attachment,
    ImportState,
    Mailbox,
    Message,
    MessageSearch,
    PollOutcome,
)
from mailboxes.parser_process import ParserProcess, ParserUnavailable, raw_file_early
from mailboxes.parsing import parse_message
from mailboxes.search_index import message_search_index
from tests.conftest import Team
from tests.mailboxes.conftest import mailbox_for
from tests.mailboxes.test_importer_hostile import as_retrieved, hostile_messages
from tests.peers.fixtures import Pop3Account

pytestmark = pytest.mark.django_db(transaction=True)


class OtherStorage(FileSystemStorage):
    """A storage the parser process is not handed (only FileSystemStorage itself is)."""

    saved: list[str] = []

    def _save(self, name: str, content: Any) -> str:
        stored = super()._save(name, content)
        OtherStorage.saved.append(stored)
        return stored


class CountingParser(ParserProcess):
    """A ParserProcess that counts the results it hands back (so a test knows it was used)."""

    results = 0

    def result(self) -> Any:
        found = super().result()
        CountingParser.results += 1
        return found


@pytest.fixture
def in_child(monkeypatch: pytest.MonkeyPatch) -> type[CountingParser]:
    monkeypatch.setattr(poll_fetch, "PARSER_PROCESS_FROM", 1)
    monkeypatch.setattr(poll_fetch, "ParserProcess", CountingParser)
    CountingParser.results = 0
    return CountingParser


def stored_view(mailbox: Mailbox) -> dict[str, tuple[Any, ...]]:
    """What the hub kept of each message, by raw digest, without ids and times."""
    view = {}
    for message in Message.objects.filter(mailbox=mailbox):
        attachments = list(
            Attachment.objects.filter(message=message)
            .order_by("pk")
            .values_list("filename", "content_type", "size", "blob__sha256")
        )
        entry = MessageSearch.objects.get(message=message)
        view[message.raw_sha256] = (
            message.import_state,
            message.subject,
            message.from_name,
            message.from_address,
            message.body_text,
            message.body_html,
            message.snippet,
            message.defects,
            message.message_id,
            message.sent_at,
            attachments,
            entry.document if connection.vendor == "sqlite" else str(entry.vector),
            raw_read(message.raw.name),
        )
    return view


def test_the_parser_process_stores_what_in_process_parsing_stores(
    team: Team,
    pop3_account: Pop3Account,
    mail_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    messages = hostile_messages()
    for raw in messages.values():
        pop3_account.deliver(raw)
    here = mailbox_for(pop3_account, team.owner, email_address="owner@sakura.example")
    report = mailbox_poll(mailbox_id=here.pk)
    assert report is not None and report.imported == len(messages)

    monkeypatch.setattr(poll_fetch, "PARSER_PROCESS_FROM", 1)
    monkeypatch.setattr(poll_fetch, "ParserProcess", CountingParser)
    CountingParser.results = 0
    there = mailbox_for(pop3_account, team.teammate, email_address="owner@sakura.example")
    report = mailbox_poll(mailbox_id=there.pk)
    assert report is not None
    assert (report.outcome, report.imported, report.failed) == (PollOutcome.OK, len(messages), 0)
    assert CountingParser.results == len(messages)
    assert stored_view(there) == stored_view(here)
    for server_copy in pop3_account.messages():
        expected = as_retrieved(server_copy)
        digest = hashlib.sha256(expected).hexdigest()
        assert raw_read(Message.objects.get(mailbox=there, raw_sha256=digest).raw.name) == expected
    assert Message.objects.filter(mailbox=there, import_state=ImportState.UNPARSED).count() == (
        Message.objects.filter(mailbox=here, import_state=ImportState.UNPARSED).count()
    )


def test_the_search_text_from_the_parse_is_the_one_rebuilt_from_the_rows(
    team: Team, pop3_account: Pop3Account, dovecot_mailbox: Mailbox, in_child: Any
) -> None:
    for raw in hostile_messages().values():
        pop3_account.deliver(raw)
    assert mailbox_poll(mailbox_id=dovecot_mailbox.pk) is not None
    assert in_child.results > 0

    def entries() -> dict[int, str]:
        return {
            entry.message_id: entry.document if connection.vendor == "sqlite" else str(entry.vector)
            for entry in MessageSearch.objects.filter(message__mailbox=dovecot_mailbox)
        }

    from_the_parser_process = entries()
    message_ids = list(Message.objects.filter(mailbox=dovecot_mailbox).values_list("pk", flat=True))
    assert len(from_the_parser_process) == len(message_ids)
    # Rebuilt from the stored rows, as the search's own maintenance does.
    message_search_index(message_ids=message_ids)
    assert entries() == from_the_parser_process


class DyingParser(ParserProcess):
    """Its child is killed once it has been sent ``survives`` messages."""

    survives = 3

    def submit(self, raw: bytes, digest: str) -> None:
        if DyingParser.survives == 0:
            self._process.kill()
            self._process.wait()
        DyingParser.survives -= 1
        super().submit(raw, digest)


def test_a_parser_process_that_dies_leaves_the_rest_to_the_worker(
    team: Team,
    pop3_account: Pop3Account,
    dovecot_mailbox: Mailbox,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(poll_fetch, "PARSER_PROCESS_FROM", 1)
    monkeypatch.setattr(poll_fetch, "ParserProcess", DyingParser)
    DyingParser.survives = 3
    delivered = [
        as_retrieved(f"From: a{i}@example.com\r\nSubject: m{i}\r\n\r\nbody {i}\r\n".encode())
        for i in range(12)
    ]
    for raw in delivered:
        pop3_account.deliver(raw)
    report = mailbox_poll(mailbox_id=dovecot_mailbox.pk)
    assert report is not None
    assert (report.outcome, report.imported, report.failed) == (PollOutcome.OK, 12, 0)
    assert DyingParser.survives < 0  # the child was killed mid-poll …
    assert "parsing in-process from here" in caplog.text  # … and the worker took over
    stored = {m.raw_sha256: m for m in Message.objects.filter(mailbox=dovecot_mailbox)}
    for raw in delivered:
        message = stored[hashlib.sha256(raw).hexdigest()]
        assert raw_read(message.raw.name) == raw
        assert message.subject == raw.split(b"Subject: ")[1].split(b"\r\n")[0].decode()


def test_a_child_that_is_gone_is_reported_not_waited_for() -> None:
    parser = ParserProcess(own_address="owner@sakura.example", file_store=None)
    parser._process.kill()
    parser._process.wait()
    with pytest.raises(ParserUnavailable):
        for _ in range(50):  # the pipe takes a few writes before it reports the broken end
            parser.submit(b"Subject: x\r\n\r\n" + b"y" * 100_000, "0" * 64)
        parser.result()
    parser.close()


def test_with_a_storage_other_than_the_file_system_the_worker_writes_the_raw_files(
    team: Team, pop3_account: Pop3Account, dovecot_mailbox: Mailbox, in_child: Any, tmp_path: Any
) -> None:
    pop3_account.deliver(b"From: a@example.com\r\nSubject: kept\r\n\r\nbody\r\n")
    OtherStorage.saved = []
    storages = {
        "default": {"BACKEND": "tests.mailboxes.test_parser_process.OtherStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    with override_settings(STORAGES=storages, MEDIA_ROOT=tmp_path):
        report = mailbox_poll(mailbox_id=dovecot_mailbox.pk)
        assert report is not None and report.imported == 1
        assert in_child.results == 1
        message = Message.objects.get(mailbox=dovecot_mailbox)
        assert OtherStorage.saved == [message.raw.name]
        assert raw_read(message.raw.name).endswith(b"body\r\n")


def _parse_in_a_daemonic_process(results: Any) -> None:
    parser = ParserProcess(own_address="owner@sakura.example", file_store=None)
    try:
        parser.submit(b"From: a@example.com\r\nSubject: from a daemon\r\n\r\nbody\r\n", "0" * 64)
        results.put(parser.result().parsed.subject)
    finally:
        parser.close()


def test_the_parser_process_starts_from_a_daemonic_process_as_celery_prefork_runs_tasks() -> None:
    # A Celery prefork child is daemonic, and multiprocessing refuses to start children from
    # one; the parser process is a plain subprocess, which is allowed.
    import multiprocessing

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    worker = context.Process(target=_parse_in_a_daemonic_process, args=(results,), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert worker.exitcode == 0
    assert results.get(timeout=5) == "from a daemon"


def test_only_what_may_be_a_copy_of_hub_mail_waits_for_the_commit_to_write_its_file() -> None:
    def parsed(sender: str, message_id: str) -> Any:
        return parse_message(
            f"From: {sender}\r\nMessage-ID: <{message_id}>\r\nSubject: s\r\n\r\nx\r\n".encode()
        )

    own = "owner@sakura.example"
    hub_id = new_message_id(own)  # as the hub names what it sends
    assert not raw_file_early(parsed(own, hub_id), own)
    assert raw_file_early(parsed(own, "CAF=phone-client.1@mail.example"), own)
    assert raw_file_early(parsed("someone@client.example", hub_id), own)
