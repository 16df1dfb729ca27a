"""HTML mail made safe to show in an app's web view, with nh3 (ammonia).

Nothing in the result may run code or reach the network on its own: no scripts, forms,
event handlers or styles, and no image that loads from outside the message (a remote
image is how senders track who read what). Only `cid:` images, which point back into
the message itself, keep their source.
"""

from __future__ import annotations

import html as html_lib
import re

import nh3

# Tags removed together with their content: their text is not meant for the reader.
_DROP_WITH_CONTENT = {"script", "style", "title", "noscript", "template", "iframe", "object"}
_URL_SCHEMES = {"http", "https", "mailto", "tel", "cid"}
_SOURCE_ATTRIBUTES = {"src", "srcset", "background", "poster", "longdesc"}


def _keep_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Drop every source that is not inside the message; links may stay (the user clicks)."""
    if attribute in _SOURCE_ATTRIBUTES and not value.strip().lower().startswith("cid:"):
        return None
    return value


_cleaner = nh3.Cleaner(
    tags=set(nh3.ALLOWED_TAGS),
    clean_content_tags=_DROP_WITH_CONTENT,
    url_schemes=_URL_SCHEMES,
    attribute_filter=_keep_attribute,
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)


def sanitize_html(html: str) -> str:
    """The fragment a client may render as is."""
    return _cleaner.clean(html).strip()


def html_to_text(html: str) -> str:
    """A plain-text rendering for HTML-only mail, for previews and text-only clients."""
    text = nh3.clean(
        re.sub(
            r"(?i)</p>|</div>|</h[1-6]>|</table>",
            "\n\n",
            re.sub(r"(?i)<br\s*/?>|</tr>|</li>", "\n", html),
        ),
        tags=set(),
        clean_content_tags=_DROP_WITH_CONTENT,
    )
    text = html_lib.unescape(text)
    return re.sub(r"\n\s*\n+", "\n\n", re.sub(r"[ \t\r\f\v]+", " ", text)).strip()
