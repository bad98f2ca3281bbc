"""Every translatable string has a Japanese translation, and the compiled catalogue is current.

The strings are extracted afresh from a copy of the code with Django's makemessages (xgettext),
so a new string without a translation fails here, not in front of a Japanese recruiter.
"""

from __future__ import annotations

import gettext
import shutil
import subprocess
import sys
from pathlib import Path

import polib

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "locale" / "ja" / "LC_MESSAGES"
SOURCES = ["manage.py", "recruitmail", "records", "mailboxes", "sharing", "templates", "static"]


def _extract(tmp_path: Path) -> list[polib.POEntry]:
    copy = tmp_path / "project"
    copy.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, copy / name, ignore=shutil.ignore_patterns("__pycache__", "migrations")
            )
        else:
            shutil.copy(source, copy / name)
    (copy / "locale").mkdir()
    entries: list[polib.POEntry] = []
    for domain in ("django", "djangojs"):
        subprocess.run(
            [
                sys.executable,
                "manage.py",
                "makemessages",
                "-l",
                "ja",
                "-d",
                domain,
                "--no-location",
            ],
            cwd=copy,
            check=True,
            capture_output=True,
            env={"DEBUG": "true", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(copy)},
        )
        path = copy / "locale" / "ja" / "LC_MESSAGES" / f"{domain}.po"
        if path.exists():
            entries.extend(polib.pofile(str(path)))
    return entries


def test_every_string_has_a_japanese_translation(tmp_path: Path) -> None:
    extracted = _extract(tmp_path)
    assert len(extracted) > 100  # the extraction really ran over the templates and the code
    committed = {}
    for domain in ("django", "djangojs"):
        path = CATALOGUE / f"{domain}.po"
        if path.exists():
            for entry in polib.pofile(str(path)):
                if entry.translated() and not entry.obsolete:
                    committed[(entry.msgctxt, entry.msgid)] = entry
    missing = sorted({e.msgid for e in extracted if (e.msgctxt, e.msgid) not in committed})
    assert not missing, f"{len(missing)} strings have no Japanese translation, e.g.: {missing[:15]}"


def test_the_compiled_catalogue_matches_the_translations() -> None:
    po = polib.pofile(str(CATALOGUE / "django.po"))
    with (CATALOGUE / "django.mo").open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = [
        entry.msgid
        for entry in po
        if entry.translated() and _compiled(compiled, entry) != _text(entry)
    ]
    assert not stale, f"run `make messages`: django.mo is older than django.po, e.g. {stale[:5]}"


def _text(entry: polib.POEntry) -> str:
    return entry.msgstr_plural[0] if entry.msgid_plural else entry.msgstr


def _compiled(compiled: gettext.GNUTranslations, entry: polib.POEntry) -> str:
    """What the compiled catalogue gives for ``entry`` (Japanese has one plural form)."""
    if entry.msgid_plural:
        if entry.msgctxt:
            return compiled.npgettext(entry.msgctxt, entry.msgid, entry.msgid_plural, 2)
        return compiled.ngettext(entry.msgid, entry.msgid_plural, 2)
    if entry.msgctxt:
        return compiled.pgettext(entry.msgctxt, entry.msgid)
    return compiled.gettext(entry.msgid)
