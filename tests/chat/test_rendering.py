from html.parser import HTMLParser

import pytest

from chat.rendering import display_text, render_markdown, sanitize_table_html


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
