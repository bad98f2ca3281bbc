from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from mailboxes.models import Mailbox, MailboxStatus, Message

pytestmark = pytest.mark.django_db


def test_demo_mail_goes_through_the_real_pipeline_once(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings.MEDIA_ROOT = str(tmp_path)
    with pytest.raises(CommandError, match="demo_setup"):
        call_command("demo_mail")
    call_command("demo_setup")
    call_command("demo_mail")
    call_command("demo_mail")
    mailbox = Mailbox.objects.get()
    assert mailbox.status == MailboxStatus.PAUSED
    assert not Mailbox.objects.due().exists()
    assert Message.objects.count() == 5
    interview = Message.objects.get(subject="面接日程のご相談")
    assert (
        "①火曜 ②水曜" in interview.body_text and "㈱サンプル" in interview.body_text
    )  # ISO-2022-JP, CP50220-style
    assert list(interview.records.values_list("display_name", flat=True)) == ["山田 太郎"]
    reply = Message.objects.get(subject="Re: 面接日程のご相談")
    assert reply.thread_id == interview.thread_id
    assert (
        "求人票を更新しました" in Message.objects.get(subject="求人票の更新について").body_text
    )  # Shift_JIS
