"""What people see of a conversation's text: the text of a message as shown,
and that text as safe HTML (markdown-it-py, Pygments, then nh3).

The sanitizer runs last, on the complete HTML, so nothing the model writes
(raw HTML, javascript: links, event handlers, remote images) survives it.
"""

from __future__ import annotations

from functools import lru_cache
from html import escape

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from chat.agent import codeact


def display_text(reply: str) -> str:
    """An assistant reply as the page shows it around its code cell: the action
    block is taken out (the cell shows the code) and solution tags are dropped."""
    text = codeact.ACTION_BLOCK.sub("", reply)
    opened = text.find(codeact.OPEN_TAG)
    if opened != -1:  # an unclosed block (a stopped reply): its code is shown as code
        code = text[opened + len(codeact.OPEN_TAG) :].strip("\n")
        text = text[:opened] + "\n```python\n" + code + "\n```"
    for tag in codeact.SOLUTION_TAGS:
        text = text.replace(tag, "")
    return text.strip()


def shown_text(role: str, content: str) -> str:
    """The text of a message as the page, the transcript and the exports show it."""
    return display_text(content) if role == "assistant" else content


_ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "s", "del", "code", "pre", "span", "blockquote",
    "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td", "div",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "span": {"class"},
    "code": {"class"},
    "pre": {"class"},
    "div": {"class"},
    "th": {"style"},
    "td": {"style"},
    "ol": {"start"},
}
_FORMATTER = HtmlFormatter(nowrap=True, classprefix="hl-")


def _highlight(code: str, lang: str, _attrs: str) -> str:
    try:
        lexer = get_lexer_by_name(lang or "text")
    except ClassNotFound:
        lexer = get_lexer_by_name("text")
    return f'<pre class="code"><code class="language-{escape(lexer.name)}">' + (
        highlight(code, lexer, _FORMATTER) + "</code></pre>"
    )


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "highlight": _highlight})
    md.enable(["table", "strikethrough"])
    # Images in model text would be fetched by the browser: show them as links.
    md.disable("image")
    return md


def sanitize(html: str) -> str:
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
    )


def render_markdown(text: str) -> str:
    """Render model or user text to sanitized HTML."""
    return sanitize(_markdown().render(text))


def highlight_code(code: str, lang: str = "python") -> str:
    """Code as highlighted HTML (Pygments escapes it), for a code cell."""
    return highlight(code, get_lexer_by_name(lang), _FORMATTER)


_TABLE_TAGS = {
    "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "colgroup", "col",
    "div", "span", "p", "br", "b", "i", "strong", "em", "code", "pre", "small", "sub", "sup",
}  # fmt: skip
_TABLE_ATTRIBUTES = {
    "th": {"colspan", "rowspan"},
    "td": {"colspan", "rowspan"},
    "col": {"span"},
    "colgroup": {"span"},
}


def sanitize_table_html(html: str) -> str:
    """HTML output of code (a DataFrame's table) reduced to a table allowlist:
    no scripts, styles, links, images, forms or attributes that could act."""
    return nh3.clean(html, tags=_TABLE_TAGS, attributes=_TABLE_ATTRIBUTES, url_schemes=set())
