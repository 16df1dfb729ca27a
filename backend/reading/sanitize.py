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

# The HTML5 tree builder under nh3 slows down with the square of the nesting depth, and
# faster than linearly with size. Real mail nests a few dozen levels; past these bounds
# the HTML is not rendered and its text is shown instead.
MAX_HTML_DEPTH = 400
MAX_HTML_CHARS = 1_000_000
# Named or bare `&` and stray `<` cost the tokenizer more than linear time too.
MAX_HTML_REFERENCES = 20_000
_COSTLY_MARKUP = re.compile(r"&(?!#)|<(?![A-Za-z/!?])")
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]{0,31})")
# Elements that never nest (void) or that the next sibling closes: not counted as depth.
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "wbr"}
_CLOSED_BY_SIBLING = {"p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th"}
_NOT_NESTING = frozenset(
    _VOID | _CLOSED_BY_SIBLING | {"source", "track", "thead", "tbody", "tfoot", "colgroup"}
)


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


def is_renderable(html: str) -> bool:
    """False for HTML too large or too deeply nested to sanitise in bounded time.

    A linear scan of tag names, not a parse: it may over-count (a tag inside a comment),
    which only shows a mail as text; it cannot under-count what the tree builder nests.
    """
    if len(html) > MAX_HTML_CHARS:
        return False
    if sum(1 for _ in _COSTLY_MARKUP.finditer(html)) > MAX_HTML_REFERENCES:
        return False
    depth = 0
    for closing, name in _TAG.findall(html):
        if name.lower() in _NOT_NESTING:
            continue
        if closing:
            depth = max(depth - 1, 0)
        else:
            depth += 1
            if depth > MAX_HTML_DEPTH:
                return False
    return True


def stripped_text(html: str) -> str:
    """Text of HTML that cannot be rendered: tags removed in one linear pass, no tree."""
    text = html_lib.unescape(re.sub(r"<[^<>]*>?", " ", html))
    return re.sub(r"\n\s*\n+", "\n\n", re.sub(r"[ \t\r\f\v]+", " ", text)).strip()
