"""The simulated recruiters of ``bench/load.py`` (a locust file; not run on its own).

Each recruiter signs in once with its own account, then, with a few seconds of reading
between pages, opens its inbox, a record page, a message from the inbox (or from the mail
shared with it), and a search. ``LOAD_BENCH_PLAN`` names a JSON file written by
``bench/load.py``: the accounts, their password, record paths and search words.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import time
from pathlib import Path
from typing import Any

from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser

PLAN = json.loads(Path(os.environ["LOAD_BENCH_PLAN"]).read_text(encoding="utf-8"))
_ACCOUNTS = itertools.cycle(PLAN["emails"])
_MESSAGE_LINK = re.compile(r'href="/mail/messages/(\d+)/"')
# Every request's time, written out when locust quits: bench/load.py computes exact
# percentiles from them (locust's own are rounded), per page and over pages only.
_TIMINGS: list[dict[str, Any]] = []


@events.request.add_listener
def _keep_timing(name: str, response_time: float, exception: Any, **kwargs: Any) -> None:
    _TIMINGS.append(
        {
            "name": name,
            "ms": response_time,
            "error": str(exception)[:200] if exception else "",
            "end": time.time(),
        }
    )


@events.quitting.add_listener
def _write_timings(**kwargs: Any) -> None:
    Path(os.environ["LOAD_BENCH_TIMINGS"]).write_text(json.dumps(_TIMINGS), encoding="utf-8")


class Recruiter(FastHttpUser):
    # FastHttpUser (geventhttpclient), not HttpUser (requests): the load generator shares the
    # machine's two cores with the server it measures, and requests costs several times the
    # CPU per request.
    wait_time = between(PLAN["wait_min"], PLAN["wait_max"])

    def on_start(self) -> None:
        self.email = next(_ACCOUNTS)
        self.message_ids: list[str] = []
        self.client.get("/accounts/login/", name="sign in (form)")
        token = next((c.value for c in self.client.cookiejar if c.name == "csrftoken"), "")
        with self.client.post(
            "/accounts/login/",
            data={
                "username": self.email,
                "password": PLAN["password"],
                "csrfmiddlewaretoken": token,
            },
            headers={"Referer": self.client.base_url + "/accounts/login/"},
            name="sign in",
            allow_redirects=False,
            catch_response=True,
        ) as response:
            # A sign-in that works answers with a redirect; a refused one shows the form again.
            if response.status_code != 302 or "/accounts/login/" in response.headers.get(
                "Location", ""
            ):
                response.failure(f"sign-in of {self.email} refused ({response.status_code})")

    def _remember_messages(self, html: str) -> None:
        found = _MESSAGE_LINK.findall(html)
        if found:
            self.message_ids = found[:25]

    @task(3)
    def inbox(self) -> None:
        response = self.client.get("/mail/inbox/", name="inbox")
        self._remember_messages(response.text)

    @task(1)
    def shared(self) -> None:
        response = self.client.get("/mail/shared/", name="shared with me")
        if not self.message_ids:
            self._remember_messages(response.text)

    @task(2)
    def record(self) -> None:
        self.client.get(random.choice(PLAN["records"]), name="record page")

    @task(2)
    def message(self) -> None:
        if not self.message_ids:
            self.shared()
            return
        self.client.get(f"/mail/messages/{random.choice(self.message_ids)}/", name="message page")

    @task(1)
    def search(self) -> None:
        self.client.get(
            "/mail/search/", params={"q": random.choice(PLAN["search_words"])}, name="search"
        )
