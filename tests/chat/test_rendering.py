import time
from html import escape
from html.parser import HTMLParser

import pytest

from chat.rendering import (
    MATH_MAX_CHARS,
    MATH_MAX_LENGTH,
    display_text,
    render_markdown,
    sanitize,
    sanitize_table_html,
)


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.elements


def test_it_renders_markdown_and_highlights_code():
    html = render_markdown("Some **bold** text\n\n```python\nprint(1)\n```")
    assert "<strong>bold</strong>" in html
    assert '<pre class="code">' in html
    assert 'class="hl-nb"' in html  # Pygments token class for the builtin print


@pytest.mark.parametrize(
    "payload",
    [
        "<script>alert(1)</script>",
        '<img src="x" onerror="alert(1)">',
        "[click](javascript:alert(1))",
        "![tracker](https://attacker.example/pixel.png)",
        '<a href="https://example.com" onclick="alert(1)">x</a>',
        "<iframe src=https://attacker.example></iframe>",
    ],
)
def test_it_renders_hostile_text_inert(payload):
    found = elements(render_markdown(payload))
    assert found, "the payload should still be shown, as text or a link"
    for tag, attrs in found:
        assert tag not in {"script", "img", "iframe", "object", "embed"}
        assert not [name for name in attrs if name.startswith("on")]
        assert not (attrs.get("href") or "").lower().startswith("javascript:")


def test_it_turns_images_into_links_that_are_not_loaded():
    html = render_markdown("![chart](https://example.com/c.png)")
    assert "<img" not in html
    assert 'href="https://example.com/c.png"' in html
    assert 'rel="noopener noreferrer nofollow"' in html


def test_it_keeps_tables():
    html = render_markdown("|a|b|\n|-|-|\n|1|2|")
    assert "<table>" in html and "<td>2</td>" in html


def test_dataframe_html_keeps_only_the_table():
    # The shape pandas emits, with payloads added.
    html = (
        "<div><style scoped>.dataframe tbody tr th {vertical-align: top;}</style>"
        '<table border="1" class="dataframe" onclick="alert(1)">'
        '<thead><tr style="text-align: right;"><th></th><th colspan="2">a</th></tr></thead>'
        '<tbody><tr><th>0</th><td><a href="javascript:alert(1)">x</a></td>'
        '<td><img src="https://evil.example/p.png" onerror="alert(1)">y</td></tr></tbody>'
        "</table><script>alert(1)</script></div>"
    )
    clean = sanitize_table_html(html)
    assert "<table>" in clean and '<th colspan="2">a</th>' in clean
    for bad in ("script", "style", "onclick", "onerror", "javascript", "<img", "<a ", "evil"):
        assert bad not in clean, bad
    assert "<td>x</td>" in clean and "<td>y</td>" in clean


@pytest.mark.parametrize(
    ("reply", "shown"),
    [
        ("Let me check.\n<execute>\nprint(1)\n</execute>", "Let me check."),
        ("The answer is <solution>42</solution>.", "The answer is 42."),
        ("Stopped here:\n<execute>\nx = 1", "Stopped here:\n\n```python\nx = 1\n```"),
        ("Plain.", "Plain."),
    ],
)
def test_it_shows_a_reply_without_its_action(reply, shown):
    assert display_text(reply) == shown


# Math: $…$, $$…$$, \(…\) and \[…\] become MathML on the server.

_MATHML_TAGS = {
    "math", "mrow", "mi", "mn", "mo", "mtext", "mspace", "msub", "msup", "msubsup",
    "mfrac", "msqrt", "mroot", "munder", "mover", "munderover", "mtable", "mtr", "mtd",
    "mstyle", "mpadded", "mphantom", "menclose",
}  # fmt: skip


def maths(html: str) -> list[dict[str, str | None]]:
    return [attrs for tag, attrs in elements(html) if tag == "math"]


@pytest.mark.parametrize(
    ("text", "display"),
    [
        (r"Inline $x^2$ here.", "inline"),
        (r"Inline \(x^2\) here.", "inline"),
        ("$$x^2$$", "block"),
        ("\\[\nx^2\n\\]", "block"),
        (r"In a paragraph $$x^2$$ too.", "block"),
        ("The square:\n\\[ x^2 \\]\nis positive.", "block"),
    ],
)
def test_the_four_delimiters_give_mathml(text, display):
    html = render_markdown(text)
    [math] = maths(html)
    assert math["display"] == display
    assert "<msup><mi>x</mi><mn>2</mn></msup>" in html
    assert "$" not in html and "\\" not in html


def test_display_math_is_a_block_of_its_own():
    html = render_markdown(r"Sum:" "\n\n" r"$$\sum_{i=1}^{n} i = \frac{n(n+1)}{2}$$")
    assert '<div class="math-display"><math display="block">' in html
    for tag in ("munderover", "mfrac"):
        assert f"<{tag}>" in html
    # In a paragraph it is a span, so the HTML stays valid (no div inside a p).
    html = render_markdown(r"so $$\sqrt{2}$$ is irrational")
    assert '<p>so <span class="math-display"><math display="block"><mrow><msqrt>' in html


def test_common_math_keeps_its_structure_through_the_sanitizer():
    html = render_markdown(
        r"$$\begin{cases} \left(\frac{a}{b}\right)^2 & x \ge 0 \\ \sqrt[3]{x_i} & "
        r"\text{otherwise} \end{cases}$$"
    )
    tags = {tag for tag, _ in elements(html)}
    assert {"mtable", "mtr", "mtd", "mfrac", "mroot", "msub", "msup", "mtext"} <= tags
    assert 'columnalign="left"' in html
    assert 'stretchy="true"' in html


@pytest.mark.parametrize(
    "text",
    [
        "Use `$x$` or `\\(y\\)` in LaTeX.",
        "```\n$x^2$ and $$y$$ and \\[z\\]\n```",
        "    $x^2$ indented code",
    ],
)
def test_math_is_not_recognised_in_code(text):
    html = render_markdown(text)
    assert "<math" not in html
    assert "$x" in html or "\\(y" in html


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("It costs $10 with a discount; in code, `$x$` stays.", "$x$"),
        ("$a `b$` c", "b$"),
        (r"Use \( in a regex: `re.compile(r'\(x\)')`", r"re.compile(r'\(x\)')"),
    ],
)
def test_math_never_runs_into_a_code_span(text, code):
    html = render_markdown(text)
    assert "<math" not in html
    assert f"<code>{escape(code, quote=False)}</code>" in html


def test_text_full_of_unclosed_delimiters_renders_in_linear_time():
    # texmath's own \( rule scans to the end of the paragraph from every opener:
    # about 1.7 s for this text here, which the bounded rule renders in about 0.4 s.
    text = "".join(f"\\(a{i} \\[b $c{i} $$d` " for i in range(5_000)) + "\n\n"
    text += "\n".join(f"\\[ {i}" for i in range(2_000))
    started = time.monotonic()
    render_markdown(text)
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    "text",
    [
        "It costs $5 and $10.",
        "Between $5, $10 and $20.",
        "From $5-$10 a month.",
        "US$ 5 or $ 10",
    ],
)
def test_prices_are_not_math(text):
    html = render_markdown(text)
    assert "<math" not in html
    assert html == f"<p>{text}</p>\n"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (r"Broken: $\frac{a$", r'<code class="math-error">$\frac{a$</code>'),
        (r"Broken: \(\frac{<b>\)", r'<code class="math-error">\(\frac{&lt;b&gt;\)</code>'),
        ("$$\\begin{matrix} a\n$$", '<pre class="math-error"><code>$$\\begin{matrix} a\n$$'),
    ],
)
def test_malformed_latex_is_shown_as_its_text(text, shown):
    html = render_markdown(text)
    assert "<math" not in html
    assert shown in html


def test_a_formula_over_the_size_cap_is_shown_as_text_quickly():
    latex = "+".join(rf"\frac{{{i}}}{{x}}" for i in range(400))
    assert len(latex) > MATH_MAX_CHARS
    started = time.monotonic()
    html = render_markdown(f"$${latex}$$")
    assert time.monotonic() - started < 1.5
    assert "<math" not in html and 'class="math-error"' in html
    assert html.count(r"\frac{") == 400


def test_macro_bombs_and_deep_nesting_end_quickly():
    bomb = r"\def\za{xx}" + "".join(
        rf"\def\z{chr(98 + i)}{{\z{chr(97 + i)}\z{chr(97 + i)}}}" for i in range(20)
    )
    started = time.monotonic()
    html = render_markdown(f"$${bomb}\\zu$$")
    assert "<math" not in html and 'class="math-error"' in html
    # Deep nesting under the cap renders or, past Python's recursion limit, is text.
    for latex in ("{" * 900 + "x" + "}" * 900, r"\sqrt{" * 250 + "x" + "}" * 250):
        html = render_markdown(f"$${latex}$$")
        assert ("<math" in html) != ('class="math-error"' in html)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "latex", [r"\hspace{-50em}x", r"\kern 300px x", r"\rule{100em}{100em}", r"{a \above 99em b}"]
)
def test_a_formula_with_a_huge_length_is_shown_as_text(latex):
    # It could push itself over the page or paint a large black bar.
    assert MATH_MAX_LENGTH < 50
    html = render_markdown(f"${latex}$")
    assert "<math" not in html and 'class="math-error"' in html
    assert "<mspace" in render_markdown(r"$a\quad b\hspace{2em}c\!d$")


def test_text_in_math_is_escaped_not_parsed():
    html = render_markdown(r"$\text{if a<b & c>d}$")
    assert "<mtext>if&nbsp;a&lt;b&nbsp;&amp;&nbsp;c&gt;d</mtext>" in html


_MATHML_PAYLOADS = [
    # raw MathML: Markdown escapes it (html is off), and the sanitizer is tested on it below
    '<math><maction actiontype="statusline" xlink:href="javascript:alert(1)">'
    "<mtext>x</mtext><mtext>javascript:alert(1)</mtext></maction></math>",
    '<math href="javascript:alert(1)"><mi>x</mi></math>',
    '<math><mi xlink:href="javascript:alert(1)" href="javascript:alert(1)">x</mi></math>',
    '<math><semantics><mi>x</mi><annotation-xml encoding="text/html">'
    "<script>alert(1)</script><img src=x onerror=alert(1)></annotation-xml></semantics></math>",
    "<math><mtext><img src=x onerror=alert(1)></mtext></math>",
    "<math><style><img src=x onerror=alert(1)></style></math>",
    "<math><mtext><style><img src=x onerror=alert(1)></style></mtext></math>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<math><svg onload="alert(1)"><a href="javascript:alert(1)"><text>x</text></a></svg></math>',
    "<math><mi><svg><script>alert(1)</script><foreignObject><img src=x onerror=alert(1)>"
    "</foreignObject></svg></mi></math>",
    '<math onclick="alert(1)" style="color:red"><mi onmouseover="alert(1)" src="x">x</mi></math>',
    # LaTeX that tries to smuggle HTML or links through latex2mathml
    r"$\text{<script>alert(1)</script>}$",
    r"$\text{</math><img src=x onerror=alert(1)>}$",
    r"$\href{javascript:alert(1)}{x}$",
    r"$$\href{javascript:alert(1)}{\text{click me}}$$",
    r"\(\style{background:url(javascript:alert(1))}{x}\class{evil}{y}\)",
    r"\[\color{white}{x}\text{<a href=javascript:alert(1)>y</a>}\]",
    r"$\mathrm{<svg onload=alert(1)>}$",
]


def _assert_inert(html: str) -> None:
    for tag, attrs in elements(html):
        assert tag not in {
            "script", "img", "iframe", "object", "embed", "svg", "style", "maction",
            "semantics", "annotation", "annotation-xml", "foreignobject", "mglyph",
        }, tag  # fmt: skip
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        if tag in _MATHML_TAGS:
            assert not {"href", "xlink:href", "src", "style", "class", "id"} & set(attrs), attrs
        for value in attrs.values():
            assert "javascript:" not in (value or "").lower(), (tag, attrs)
    assert "<script" not in html.lower()


@pytest.mark.parametrize("payload", _MATHML_PAYLOADS)
def test_hostile_math_is_inert(payload):
    html = render_markdown(payload)
    assert elements(html), "the payload should still be shown"
    _assert_inert(html)
    # The sanitizer on its own, as if Markdown had let the raw HTML through.
    _assert_inert(sanitize(payload))


def test_the_sanitizer_keeps_only_the_allowed_mathml():
    html = sanitize(
        '<p><math display="block" xmlns="http://www.w3.org/1998/Math/MathML" id="x" '
        'mathcolor="red" mathbackground="url(x)"><mrow><mo stretchy="true" '
        'largeop="true">(</mo><mtable columnlines="solid"><mtr><mtd columnalign="left" '
        'style="x"><mi mathvariant="bold">a</mi></mtd></mtr></mtable><ms>s</ms></mrow>'
        "</math></p>"
    )
    assert html == (
        '<p><math display="block"><mrow><mo stretchy="true">(</mo><mtable><mtr>'
        '<mtd columnalign="left"><mi mathvariant="bold">a</mi></mtd></mtr></mtable>s</mrow>'
        "</math></p>"
    )
    # MathML elements outside <math> are not MathML: dropped, content and all.
    assert sanitize("<p><mi>x</mi><mfrac>y</mfrac></p>") == "<p></p>"
