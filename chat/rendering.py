"""What people see of a conversation's text: the text of a message as shown,
and that text as safe HTML (markdown-it-py, Pygments, latex2mathml, then nh3).

Math written as $…$, $$…$$, \\(…\\) or \\[…\\] becomes MathML on the server,
which the browser typesets itself: the page loads no math script.

The sanitizer runs last, on the complete HTML, so nothing the model writes
(raw HTML, javascript: links, event handlers, remote images, MathML actions)
survives it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from html import escape
from xml.etree.ElementTree import tostring

import nh3
from latex2mathml.converter import convert_to_element
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererProtocol
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.dollarmath.index import math_inline_dollar
from mdit_py_plugins.texmath import texmath_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from chat.agent import codeact
from chat.agent.functions import stored_format


def display_text(reply: str, action_format: str = "execute", ran_code: bool = False) -> str:
    """An assistant reply as the page shows it around its code cell: the action is
    taken out (the cell shows the code) and solution tags are dropped.

    `execute` (and replies from before formats, which have none): every action
    block goes, and an unclosed one (a stopped reply) is shown as code. `fence`:
    a reply that ran code loses its action block, which the loop left last; the
    blocks of an answer are its Markdown. `tool` and `call`: the code (the call) was
    never in the text. `text`: a reply that called a function loses its Action line.
    """
    if action_format in ("fence", "text"):
        text = stored_format(action_format).text_of(reply) if ran_code else reply
    elif action_format in ("tool", "call"):
        text = reply
    else:
        text = codeact.ACTION_BLOCK.sub("", reply)
        opened = text.find(codeact.OPEN_TAG)
        if opened != -1:  # an unclosed block (a stopped reply): its code is shown as code
            code = text[opened + len(codeact.OPEN_TAG) :].strip("\n")
            text = text[:opened] + "\n```python\n" + code + "\n```"
    for tag in codeact.SOLUTION_TAGS:
        text = text.replace(tag, "")
    return text.strip()


def shown_text(
    role: str, content: str, action_format: str = "execute", ran_code: bool = False
) -> str:
    """The text of a message as the page, the transcript and the exports show it.

    `ran_code`: the reply is a step whose action was taken (`reply_ran_code`)."""
    return display_text(content, action_format, ran_code) if role == "assistant" else content


def reply_ran_code(final: bool, status: str) -> bool:
    """Whether an assistant reply is a step whose action the loop took: the loop
    stores it complete (not stopped, failed or interrupted) and not final (not the
    answer). A step cut at the execution limit counts too: its code was the action,
    though it did not run."""
    return not final and status == "complete"


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
# MathML, only as latex2mathml writes it for common math (fractions, roots,
# scripts, sums and limits, matrices, cases and aligned, accents, \boxed, spacing).
# Left out on purpose: maction, semantics/annotation(-xml), mglyph, ms, and the
# href, style, class, id, src, mathcolor and mathbackground attributes that
# \href, \style, \class or \color would write.
_MATH_TAGS = {
    "math", "mrow", "mi", "mn", "mo", "mtext", "mspace", "msub", "msup", "msubsup",
    "mfrac", "msqrt", "mroot", "munder", "mover", "munderover", "mtable", "mtr", "mtd",
    "mstyle", "mpadded", "mphantom", "menclose",
}  # fmt: skip
_MATH_ATTRIBUTES = {
    "math": {"display"},
    "mi": {"mathvariant"},
    "mtext": {"mathvariant"},
    "mo": {"accent", "fence", "form", "stretchy", "lspace", "rspace", "minsize", "maxsize",
           "movablelimits"},
    "mover": {"accent"},
    "mfrac": {"linethickness"},
    "mspace": {"width", "height", "depth"},
    "mpadded": {"width", "height", "depth", "lspace", "voffset"},
    "mstyle": {"displaystyle", "scriptlevel"},
    "mtable": {"displaystyle"},
    "mtd": {"columnalign"},  # app.css aligns by it (MathML Core has no columnalign)
    "menclose": {"notation"},  # app.css draws \boxed by it (MathML Core has no menclose)
}  # fmt: skip
_FORMATTER = HtmlFormatter(nowrap=True, classprefix="hl-")


def _highlight(code: str, lang: str, _attrs: str) -> str:
    try:
        lexer = get_lexer_by_name(lang or "text")
    except ClassNotFound:
        lexer = get_lexer_by_name("text")
    return f'<pre class="code"><code class="language-{escape(lexer.name)}">' + (
        highlight(code, lexer, _FORMATTER) + "</code></pre>"
    )


# One formula longer than this is shown as its LaTeX text: latex2mathml's time
# grows with the formula, and no real answer needs more.
MATH_MAX_CHARS = 2_000
_MATH_CLOSERS = {"$": "$", "$$": "$$", "\\(": "\\)", "\\[": "\\]"}
_HEX_ENTITY = re.compile(r"&#x([0-9a-fA-F]+);")
_BRACE = re.compile(r"\\.|[{}]", re.DOTALL)
# Lengths latex2mathml copies from the LaTeX (\hspace, \kern, \rule, \above...):
# a formula with one over this many units is shown as text, so no formula can
# push itself over the page or paint a fraction bar as a large block.
MATH_MAX_LENGTH = 20
_LENGTHS = {"width", "height", "depth", "lspace", "rspace", "voffset", "linethickness",
            "minsize", "maxsize"}  # fmt: skip
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
# How many children these take; latex2mathml writes fewer for input such as "\frac{a".
_ARITY = {
    "mfrac": 2, "mroot": 2, "msub": 2, "msup": 2, "munder": 2, "mover": 2,
    "msubsup": 3, "munderover": 3,
}  # fmt: skip


def _balanced(latex: str) -> bool:
    depth = 0
    for match in _BRACE.finditer(latex):
        depth += {"{": 1, "}": -1}.get(match.group(0), 0)
        if depth < 0:
            return False
    return depth == 0


def _entity(match: re.Match[str]) -> str:
    code = int(match.group(1), 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return match.group(0)
    return chr(code)


@lru_cache(maxsize=512)
def _mathml(latex: str, display: bool) -> str | None:
    """LaTeX as a `<math>` element, or None when it is too long, its braces do
    not balance, a length in it is too large, or latex2mathml cannot read it or
    writes an incomplete element.

    latex2mathml's own serializer unescapes its whole output (so \\text{<b>}
    would come out as a tag): its element tree is serialized here instead, the
    character references it writes as text turned into the characters."""
    if not latex or len(latex) > MATH_MAX_CHARS or not _balanced(latex):
        return None
    try:
        root = convert_to_element(latex, display="block" if display else "inline")
        root.attrib.pop("xmlns", None)  # HTML puts <math> in the MathML namespace itself
        for element in root.iter():
            if len(element) != _ARITY.get(element.tag, len(element)):
                return None
            for name in _LENGTHS.intersection(element.attrib):
                number = _NUMBER.match(element.attrib[name])
                if number and abs(float(number.group(0))) > MATH_MAX_LENGTH:
                    return None
            if element.text:
                element.text = _HEX_ENTITY.sub(_entity, element.text)
            if element.tail:
                element.tail = _HEX_ENTITY.sub(_entity, element.tail)
        return tostring(root, encoding="unicode", short_empty_elements=False)
    except Exception:  # its own errors, and IndexError, RecursionError... on odd input
        return None


def _math_html(token: Token, display: bool, block: bool) -> str:
    """A math token as MathML; as its LaTeX source (escaped) when that fails."""
    mathml = _mathml(token.content.strip(), display)
    if mathml is None:
        source = token.markup + token.content + _MATH_CLOSERS.get(token.markup, "")
        if token.type == "math_block_eqno":
            source += f" ({token.info})"
        if block:
            return f'<pre class="math-error"><code>{escape(source)}</code></pre>\n'
        return f'<code class="math-error">{escape(source)}</code>'
    if token.type == "math_block_eqno":
        mathml += f'<span class="math-label">({escape(token.info)})</span>'
    if block:
        return f'<div class="math-display">{mathml}</div>\n'
    if display:  # $$…$$ or \[…\] inside a paragraph
        return f'<span class="math-display">{mathml}</span>'
    return mathml


def _render_inline_math(
    self: RendererProtocol, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    return _math_html(tokens[idx], display=False, block=False)


def _render_inline_display_math(
    self: RendererProtocol, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    return _math_html(tokens[idx], display=True, block=False)


def _render_block_math(
    self: RendererProtocol, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    return _math_html(tokens[idx], display=True, block=True)


# dollarmath's inline rule, configured as _add_math configures the plugin: no
# space inside the dollars and no digit outside them, so "$5 and $10" is not
# math; $$…$$ inside a paragraph is display math.
_DOLLAR_RULE = math_inline_dollar(allow_space=False, allow_digits=False, allow_double=True)


def _inline_math(state: StateInline, silent: bool) -> bool:
    """Inline math: $…$ and $$…$$ by dollarmath's rule, \\(…\\) and \\[…\\] here.

    Math never holds a backtick, so it cannot run into a code span ("$10, or
    `$x$`" keeps its code). The closing \\) or \\] is looked for within
    MATH_MAX_CHARS only, so text full of unclosed openers costs linear time
    (texmath's own rule scans to the end from each one)."""
    start = state.pos
    if state.src[start] == "$":
        if not _DOLLAR_RULE(state, True):
            return False
        end, state.pos = state.pos, start
        if "`" not in state.src[start:end]:
            return _DOLLAR_RULE(state, silent)
        # Not math: the dollar is text, and the plugin's own rule (later in the
        # chain) must not get to read it as math either.
        if not silent:
            state.pending += "$"
        state.pos += 1
        return True
    opener = state.src[start : start + 2]
    if opener not in ("\\(", "\\["):
        return False
    end = state.src.find(_MATH_CLOSERS[opener], start + 2, start + 4 + MATH_MAX_CHARS)
    content = state.src[start + 2 : end]
    if end == -1 or not content.strip() or "`" in content:
        return False
    if not silent:
        token = state.push("math_inline" if opener == "\\(" else "math_inline_double", "math", 0)
        token.content = content
        token.markup = opener
    state.pos = end + 2
    return True


def _add_math(md: MarkdownIt) -> None:
    # Blocks: \[…\] (texmath) and $$…$$ (dollarmath) starting a block, whose
    # lines are then not read as Markdown. Code spans and code blocks are read
    # as code before any of these rules sees them.
    texmath_plugin(md, delimiters="brackets")
    dollarmath_plugin(
        md,
        allow_labels=False,
        allow_space=False,
        allow_digits=False,
        allow_blank_lines=False,
        double_inline=True,
    )
    # Each plugin added an inline rule named "math_inline"; the first, texmath's,
    # becomes ours, which decides on every $ before dollarmath's rule sees it.
    md.inline.ruler.at("math_inline", _inline_math)
    md.add_render_rule("math_inline", _render_inline_math)
    md.add_render_rule("math_inline_double", _render_inline_display_math)
    md.add_render_rule("math_block", _render_block_math)
    md.add_render_rule("math_block_eqno", _render_block_math)


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "highlight": _highlight})
    md.enable(["table", "strikethrough"])
    # Images in model text would be fetched by the browser: show them as links.
    md.disable("image")
    _add_math(md)
    return md


def sanitize(html: str) -> str:
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS | _MATH_TAGS,
        attributes=_ALLOWED_ATTRIBUTES | _MATH_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
    )


def render_markdown(text: str) -> str:
    """Render model or user text to sanitized HTML, math as MathML."""
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
