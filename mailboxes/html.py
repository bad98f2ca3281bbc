"""Sanitising mail HTML for storage, and rendering it as plain text.

HTML is sanitised once, when a message is stored, with nh3 (the ammonia sanitiser): scripts,
styles, event handlers, forms, frames, ``<meta>`` and ``<base>`` are gone, only ``http``,
``https``, ``mailto``, ``tel`` and ``cid`` URLs survive (no ``javascript:``, no ``data:``, no
relative URLs, which would resolve against the hub itself), inline ``style`` is dropped (we do
not sanitise CSS), and every link gets ``target="_blank"`` and
``rel="noopener noreferrer nofollow"``. The viewer still shows it in a sandboxed iframe under a
strict Content-Security-Policy; sanitising is one layer, not the only one.

Remote images -- the contract between this module and the message viewer:

- An ``<img>`` whose source is an ``http(s)`` URL is stored as
  ``<img src="" data-remote-src="URL" ...>``: nothing loads (no tracking pixel fires) until
  the viewer, when the reader clicks "show images", copies each ``data-remote-src`` into
  ``src``. The URL stays HTML-escaped as the sanitiser wrote it, so the viewer must read it
  with ``getAttribute`` (which unescapes), never by string surgery. ``data-remote-src`` is
  written only by this module: the sanitiser drops any such attribute in incoming mail.
- An ``<img src="cid:...">`` (RFC 2392, an image attached to the message) keeps its ``cid:``
  source; the viewer maps it to the URL of the attachment whose Content-ID matches.
- Any other image source is removed.
"""

from __future__ import annotations

import html
import re
from typing import NamedTuple

import nh3

_TAGS = (nh3.ALLOWED_TAGS - {"map", "area"}) | {"font", "tfoot"}
# Content removed together with the tag. Head elements land in a fragment too (a mail's
# <title> would otherwise show as text at the top).
_CLEAN_CONTENT_TAGS = {
    "script",
    "style",
    "title",
    "noscript",
    "template",
    "iframe",
    "frame",
    "frameset",
    "object",
    "embed",
    "applet",
    "svg",
    "math",
    "textarea",
    "select",
}
_LAYOUT = {"align", "valign", "width", "height", "bgcolor"}
_ATTRIBUTES = {
    "*": {"dir", "lang", "title"},
    "a": {"href", "hreflang", "name"},
    "img": {"src", "alt", "width", "height", "align", "border"},
    "font": {"color", "face", "size"},
    "table": _LAYOUT | {"border", "cellpadding", "cellspacing", "summary"},
    "td": _LAYOUT | {"colspan", "rowspan", "nowrap", "headers"},
    "th": _LAYOUT | {"colspan", "rowspan", "nowrap", "headers", "scope"},
    "tr": _LAYOUT,
    "tbody": _LAYOUT,
    "thead": _LAYOUT,
    "tfoot": _LAYOUT,
    "col": _LAYOUT | {"span"},
    "colgroup": _LAYOUT | {"span"},
    "p": {"align"},
    "div": {"align"},
    "hr": {"align", "size", "width"},
    "h1": {"align"},
    "h2": {"align"},
    "h3": {"align"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "ol": {"start", "type"},
    "ul": {"type"},
    "li": {"value"},
    "del": {"datetime"},
    "ins": {"datetime"},
    "bdo": {"dir"},
}

_SANITISER = nh3.Cleaner(
    tags=_TAGS,
    clean_content_tags=_CLEAN_CONTENT_TAGS,
    attributes=_ATTRIBUTES,
    url_schemes={"http", "https", "mailto", "tel", "cid"},
    url_relative="deny",
    link_rel="noopener noreferrer nofollow",
    set_tag_attribute_values={"a": {"target": "_blank"}},
)

# The sanitiser's output is canonical HTML (html5ever's serialiser): lower-case names, every
# value in double quotes with '"' escaped, so these patterns cannot be fooled by the input.
_IMG_TAG = re.compile(r'<img\b((?:\s+[^\s="<>]+(?:="[^"]*")?)*)\s*/?>')
_IMG_SRC = re.compile(r'(\s)src="([^"]*)"')


class SanitizedHtml(NamedTuple):
    """Stored HTML and whether it referred to remote images (now in data-remote-src)."""

    html: str
    has_remote_images: bool


def sanitize_html(source: str) -> SanitizedHtml:
    """Return ``source`` sanitised for storage, remote images blocked (module docstring)."""
    cleaned = _SANITISER.clean(source)
    if "<img" not in cleaned:
        return SanitizedHtml(cleaned, False)
    remote = False

    def block_remote_source(attribute: re.Match[str]) -> str:
        """Rewrite one src attribute: cid kept, http(s) moved to data-remote-src, else dropped."""
        nonlocal remote
        url = attribute[2].strip()
        scheme = url[:8].lower()
        if scheme.startswith("cid:"):
            return f'{attribute[1]}src="cid:{url[4:]}"'  # the scheme lower-cased for the viewer
        if scheme.startswith(("http://", "https://")):
            remote = True
            return f'{attribute[1]}src="" data-remote-src="{url}"'
        return ""

    def rewrite_img(tag: re.Match[str]) -> str:
        """Rewrite the src of one canonical <img> tag."""
        return "<img" + _IMG_SRC.sub(block_remote_source, tag[1]) + ">"

    return SanitizedHtml(_IMG_TAG.sub(rewrite_img, cleaned), remote)


# Elements that a reader sees on lines of their own.
_BLOCK_START = re.compile(r"<(?:br|p|div|tr|li|h[1-6]|hr|blockquote|table|pre|ul|ol|dl|dt|dd)\b")
_BLOCK_END = re.compile(r"</(?:p|div|li|ul|ol|dl|dt|dd|pre|h[1-6]|table|blockquote)>")
_CELL = re.compile(r"<t[dh]\b")
_TAG = re.compile(r"<[^>]*>")
# HTML's white space (which collapses) as spaces; then, in the text, &nbsp; and the like.
_SOURCE_SPACE = str.maketrans("\t\r\n\f", "    ")
_TEXT_SPACE = str.maketrans("\t\r\f\xa0", "    ")


def html_to_text(sanitized: str) -> str:
    """Render sanitised HTML as plain text for search and snippets (not for display).

    White space in the source collapses as a browser would; block elements and ``<br>`` start
    new lines, table cells are separated by a space, and at most one blank line is kept.
    (String methods rather than regular expressions where they do the same: this runs for
    every HTML-only message.)
    """
    marked = sanitized.translate(_SOURCE_SPACE)
    marked = _BLOCK_END.sub("\\g<0>\n", _BLOCK_START.sub("\n\\g<0>", marked))
    marked = _CELL.sub(" \\g<0>", marked)
    # Safe on the sanitiser's canonical output only: there, "<" and ">" appear in text and
    # attribute values as &lt; and &gt;, and there are no comments, scripts or styles.
    text = html.unescape(_TAG.sub("", marked)).translate(_TEXT_SPACE)
    lines: list[str] = []
    for line in text.split("\n"):
        collapsed = " ".join(filter(None, line.split(" ")))
        if collapsed or (lines and lines[-1]):
            lines.append(collapsed)
    return "\n".join(lines).strip()
