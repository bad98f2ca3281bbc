"""Searching mail: subject, correspondents, body text and attachment names.

The caller passes a queryset that already applies the visibility rule; this only narrows it,
through the search index of ``mailboxes.search_index`` (read its docstring for what a lexeme
is). The query language, the same on PostgreSQL and SQLite:

- words separated by spaces (full-width spaces too) must all occur: ``山田 面接``;
- a word matches the start of a word in the message (``yama`` finds "Yamada", ``gmail`` finds
  "taro@gmail.com"), and Japanese, Chinese or Korean text matches anywhere (``営業部`` finds
  "第二営業部長");
- a word with punctuation inside is a phrase of its parts (``taro.yamada@gmail``), and so is a
  "quoted phrase";
- ``-word`` excludes messages containing it.

PostgreSQL answers through one GIN index on ``MessageSearch.vector``; SQLite with ``LIKE`` over
``MessageSearch.document``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import Lookup, Q, QuerySet

from mailboxes.models import Message, MessageSearch
from mailboxes.search_index import Token, quote_lexeme, tokens

MAX_QUERY_LENGTH = 200
MAX_TERMS = 8
# A quoted phrase, or a run of non-space characters; an optional "-" before either negates it.
_TERM = re.compile(r'(-?)(?:"([^"]*)"?|(\S+))')


@dataclass(frozen=True)
class Term:
    """One condition of a query: the tokens that must stand side by side, or must not."""

    tokens: tuple[Token, ...]
    negated: bool


def search_terms(text: str) -> list[str]:
    """The distinct words and phrases of ``text`` (at most MAX_TERMS), in order, as typed."""
    return [term for term, _negated in _split(text)]


def _split(text: str) -> list[tuple[str, bool]]:
    found: dict[str, bool] = {}
    for match in _TERM.finditer(text[:MAX_QUERY_LENGTH].replace("\u3000", " ")):
        negated, phrase, word = match.groups()
        term = (phrase if phrase is not None else word).strip()
        if term and term != "-":
            found.setdefault(term, bool(negated))
    return list(found.items())[:MAX_TERMS]


def parse_query(text: str) -> list[Term]:
    """The conditions of ``text``; terms without a searchable character are dropped."""
    terms = []
    for term, negated in _split(text):
        found = tokens(term)
        if found:
            terms.append(Term(tuple(found), negated))
    return terms


def _tsquery(term: Term) -> str:
    """A term in tsquery text form: its lexemes joined by <-> (followed by), the last one by
    prefix unless it must match exactly."""
    parts = [quote_lexeme(token.lexeme) for token in term.tokens]
    if not term.tokens[-1].exact:
        parts[-1] += ":*"
    query = " <-> ".join(parts)
    return f"!({query})" if term.negated else f"({query})"


def _like_pattern(term: Term) -> str:
    """A term as a LIKE pattern over the space-separated lexemes of ``MessageSearch.document``
    (no escaping needed: lexemes hold neither ``%`` nor ``_``)."""
    body = " ".join(token.lexeme for token in term.tokens)
    return f"% {body}{'%' if not term.tokens[-1].exact else ' %'}"


class _MatchesTsQuery(Lookup):
    """``vector__matches=<tsquery text>``: ``@@`` with the text cast, not parsed again (so the
    lexemes built by ``mailboxes.search_index`` reach the index as they are)."""

    lookup_name = "matches"

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} @@ ({rhs})::tsquery", [*lhs_params, *rhs_params]


class _Like(Lookup):
    """``document__like=<pattern>``: a LIKE pattern used as given (``contains`` would escape
    its wildcards)."""

    lookup_name = "like"

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} LIKE {rhs}", [*lhs_params, *rhs_params]


MessageSearch._meta.get_field("vector").register_lookup(_MatchesTsQuery)
MessageSearch._meta.get_field("document").register_lookup(_Like)


# Newest first, on the entries' own copy of sort_at (see MessageSearch.sort_at): PostgreSQL
# finds the matches through the GIN index, sorts just them, and checks the visibility rule on
# them in that order only until a page is full, instead of walking every visible message
# newest first and testing each for the words.
NEWEST_MATCH_FIRST = ("-search_entry__sort_at", "-search_entry__message")


def messages_matching(messages: QuerySet[Message], text: str) -> QuerySet[Message]:
    """``messages`` narrowed to those matching ``text``, newest match first; none for a query
    with nothing to find (empty, punctuation only, or only exclusions)."""
    terms = parse_query(text)
    if not any(not term.negated for term in terms):
        return messages.none()
    if connections[messages.db].vendor == "postgresql":
        query = " & ".join(_tsquery(term) for term in terms)
        messages = messages.filter(search_entry__vector__matches=query)
    else:
        for term in terms:
            condition = Q(search_entry__document__like=_like_pattern(term))
            messages = messages.exclude(condition) if term.negated else messages.filter(condition)
    return messages.order_by(*NEWEST_MATCH_FIRST)
