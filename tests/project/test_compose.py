"""docker-compose.yml validates, and its services run the commands that the README documents,
that `make run` runs (Procfile.dev) and that the tests and benchmarks start."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def _compose_command() -> list[str]:
    """`docker compose` (v2) where the plugin is installed, else Debian's `docker-compose` (v1,
    installed by scripts/install-test-peers.sh): both read the same Compose file format."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    assert legacy, "neither `docker compose` nor `docker-compose` (run `make peers`)"
    return [legacy]


def _config(tmp_path: Path) -> dict[str, Any]:
    """The compose file as Compose itself resolves it, with a minimal .env beside it."""
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text(
        "SECRET_KEY=compose-test\nFERNET_KEYS=Lk0x0s3Qd9gIWQpk3cS0u8Eo7JmK4sm3nQwl8mrhXnY=\n"
        "ALLOWED_HOSTS=mail.agency.example\n"
    )
    result = subprocess.run(
        [*_compose_command(), "-f", str(tmp_path / "docker-compose.yml"), "config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _words(command: Any) -> list[str]:
    return command.split() if isinstance(command, str) else list(command)


def _queues(command: list[str]) -> set[str]:
    """The queues a `celery worker` command consumes (its -Q / --queues), empty for none."""
    for index, word in enumerate(command):
        if word in ("-Q", "--queues"):
            return set(command[index + 1].split(","))
        if word.startswith("--queues="):
            return set(word.split("=", 1)[1].split(","))
    return set()


def test_compose_file_validates_and_runs_the_documented_commands(tmp_path: Path) -> None:
    services = _config(tmp_path)["services"]
    assert set(services) >= {
        "db",
        "redis",
        "migrate",
        "web",
        "worker",
        "scheduler-worker",
        "scheduler",
    }

    web = _words(services["web"]["command"])
    worker = _words(services["worker"]["command"])
    scheduler_worker = _words(services["scheduler-worker"]["command"])
    scheduler = _words(services["scheduler"]["command"])
    assert web[:2] == ["gunicorn", "recruitmail.wsgi:application"]
    assert worker[:4] == ["celery", "-A", "recruitmail", "worker"]
    assert scheduler_worker[:4] == ["celery", "-A", "recruitmail", "worker"]
    assert scheduler[:4] == ["celery", "-A", "recruitmail", "beat"]
    assert _words(services["migrate"]["command"])[:3] == ["python", "manage.py", "migrate"]

    # The same programs as `make run` (Procfile.dev), the README and the load benchmark.
    procfile = dict(
        line.split(": ", 1) for line in (ROOT / "Procfile.dev").read_text().splitlines() if line
    )
    assert procfile["worker"].split()[:4] == worker[:4]
    assert procfile["scheduler"].split()[:4] == scheduler[:4]
    readme = (ROOT / "README.md").read_text()
    assert "celery -A recruitmail worker" in readme and "celery -A recruitmail beat" in readme
    assert "recruitmail.wsgi:application" in (ROOT / "bench" / "load.py").read_text()
    started_by_tests = (ROOT / "tests" / "peers" / "celery_worker.py").read_text()
    assert all(f'"{word}",' in started_by_tests for word in ("celery", "recruitmail", "worker"))

    # The queues (settings.TASK_QUEUE_*): the scheduler's worker consumes its queue alone, so a
    # backlog of polls never holds up the task that enqueues them; the poll workers take both
    # (the scheduler's as a safety net), as does `make run`'s single worker; the README and
    # docs/operations.md give the same -Q as the compose file.
    assert _queues(scheduler_worker) == {settings.TASK_QUEUE_SCHEDULER}
    both = {settings.TASK_QUEUE_POLLS, settings.TASK_QUEUE_SCHEDULER}
    assert _queues(worker) == both
    assert _queues(procfile["worker"].split()) == both
    operations = (ROOT / "docs" / "operations.md").read_text()
    for documented in (readme, operations):
        for command in (worker, scheduler_worker):
            queue_option = command[command.index("-Q") : command.index("-Q") + 2]
            assert " ".join(queue_option) in documented

    # Every long-running service has a health check; the one-off migration has none.
    for name in ("db", "redis", "web", "worker", "scheduler-worker", "scheduler"):
        check = services[name].get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"
    # The workers' health checks ping the node their own command names (Compose may print the
    # escaped "$$" of the file as it is).
    pinged = {
        name: re.search(r"-d (\w+)@\$+HOSTNAME", " ".join(services[name]["healthcheck"]["test"]))
        for name in ("worker", "scheduler-worker")
    }
    assert pinged["worker"] and pinged["worker"].group(1) == "celery"  # the default node name
    assert pinged["scheduler-worker"] and pinged["scheduler-worker"].group(1) == "scheduler"
    assert "--hostname=scheduler@%h" in scheduler_worker
