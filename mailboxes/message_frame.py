"""A message's HTML body as a document of its own, for a sandboxed iframe, and its policy.

Why a separate response rather than ``srcdoc``: a ``srcdoc`` document inherits the policy of
the page that embeds it, so the mail would be held only by whatever the page allows; a
response of its own carries its own strict ``Content-Security-Policy`` and is the one
response of the site that may be framed (``X-Frame-Options: SAMEORIGIN``; every other page
keeps ``DENY``). Three layers hold the mail:

1. It was sanitised with nh3 when stored (``mailboxes.html``): no scripts, forms, frames,
   styles, event handlers or ``javascript:``/``data:``/relative URLs.
2. The iframe is ``sandbox="allow-popups allow-popups-to-escape-sandbox"``: no scripts, and
   an opaque origin (no ``allow-same-origin``), so the mail can never reach the hub's cookies
   or pages. Popups are allowed only so that links (``target="_blank"``) open in a new tab.
3. The response's policy: nothing loads but images (``cid:`` ones, as hub URLs) and inline
   style, no base URL, no form target; its ``sandbox`` directive sandboxes the document even
   when opened directly, outside the iframe.

Remote images (``<img src="" data-remote-src="URL">``, see ``mailboxes.html``) stay blocked
twice over: their ``src`` is empty and the policy's ``img-src`` has no ``http:``/``https:``.
Only for a response asked for with "show images" is each ``data-remote-src`` moved into
``src`` and the policy widened to ``https: http:``, for that response only.

Images attached to the message (``src="cid:..."``, RFC 2392) point to the inline-image view
with a signed token: the sandboxed document has an opaque origin, so the browser may send its
image requests without the session cookie (SameSite), and the token names the reader for
whom the view applies the visibility rule.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from urllib.parse import unquote

# Attribute values of the iframe that shows the document (no allow-scripts, no
# allow-same-origin: see the module docstring).
IFRAME_SANDBOX = "allow-popups allow-popups-to-escape-sandbox"

# The sanitiser's output is canonical HTML: lower-case names, values in double quotes with '"'
# escaped, '<' escaped in text. So these patterns match real <img> tags only, and
# 'src="" data-remote-src="..."' is exactly what mailboxes.html writes.
_IMG_TAG = re.compile(r'<img\b((?:\s+[^\s="<>]+(?:="[^"]*")?)*)\s*/?>')
_REMOTE_SRC = re.compile(r'(\s)src="" data-remote-src="([^"]*)"')
_CID_SRC = re.compile(r'(\s)src="cid:([^"]*)"')

_STYLE = (
    "html{color-scheme:light}"
    "body{margin:12px;font:15px/1.55 system-ui,-apple-system,'Segoe UI','Hiragino Sans',"
    "'Noto Sans JP','Yu Gothic',sans-serif;color:#1d2330;overflow-wrap:anywhere}"
    "img{max-width:100%;height:auto}table{max-width:100%}pre{white-space:pre-wrap}"
    "blockquote{margin:0 0 0 .8em;padding-left:.8em;border-left:2px solid #d0d5dd}"
)


def cut_html(body_html: str, limit: int) -> tuple[str, bool]:
    """The first ``limit`` characters of ``body_html``, not ending inside a tag, and whether
    anything was cut. (The HTML parser closes whatever elements remain open.)"""
    if len(body_html) <= limit:
        return body_html, False
    head = body_html[:limit]
    if head.rfind("<") > head.rfind(">"):
        head = head[: head.rfind("<")]
    return head, True


def frame_document(
    body_html: str,
    *,
    cid_url: Callable[[str], str | None],
    show_remote_images: bool,
) -> str:
    """The iframe's document for stored (sanitised) ``body_html``.

    ``cid_url`` maps a Content-ID (without ``<>``) to the URL of the attachment it names, or
    None; an unknown ``cid:`` source (no such part, or one that is not a raster image) is
    emptied, so that the browser does not even try it (Chromium reports every ``cid:`` URL as
    a request it could not make).
    """

    def cid_source(attribute: re.Match[str]) -> str:
        # RFC 2392: the cid URL is the Content-ID, %-encoded; here also HTML-escaped.
        url = cid_url(unquote(html.unescape(attribute[2])))
        return f'{attribute[1]}src="{html.escape(url) if url else ""}"'

    def rewrite_img(tag: re.Match[str]) -> str:
        attributes = _CID_SRC.sub(cid_source, tag[1])
        if show_remote_images:
            # The URL stays escaped as the sanitiser wrote it: it moves from one
            # double-quoted attribute value to another, so it needs no unescaping.
            attributes = _REMOTE_SRC.sub(r'\1src="\2"', attributes)
        return f"<img{attributes}>"

    body = _IMG_TAG.sub(rewrite_img, body_html) if "<img" in body_html else body_html
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def frame_policy(*, hub_origin: str, show_remote_images: bool) -> str:
    """The Content-Security-Policy of the frame document (``hub_origin``: scheme://host)."""
    images = ["cid:", "data:", hub_origin]
    if show_remote_images:
        images += ["https:", "http:"]
    return "; ".join(
        [
            "default-src 'none'",
            "img-src " + " ".join(images),
            "style-src 'unsafe-inline'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'self'",
            f"sandbox {IFRAME_SANDBOX}",
        ]
    )
