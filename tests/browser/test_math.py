"""Math in an answer is MathML made on the server, typeset by Chromium itself;
hostile MathML and LaTeX stay inert on the page."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.test_chat_page import ask, start_conversation
from tests.support.scripted_model import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.integration]

ANSWER = r"""The mean of $x_1, \dots, x_n$ is $\bar{x} = \frac{1}{n}\sum_{i=1}^{n} x_i$,
and \(\sigma\) is its spread:

$$
\sigma = \sqrt{\frac{1}{n-1}\sum_{i=1}^{n} \left(x_i - \bar{x}\right)^2}
$$

The roots of $ax^2 + bx + c = 0$ are
\[
x_{1,2} = \frac{-b \pm \sqrt{b^2 - 4ac}}{2a}, \qquad
A = \begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix},\quad
|x| = \begin{cases} x & x \ge 0 \\ -x & \text{otherwise} \end{cases}
\]

A ticket costs $5 and $10 with a discount; in code, `$x$` stays as it is."""

HOSTILE = r"""Tricks, all of which must stay inert:

<math><maction actiontype="statusline" xlink:href="javascript:alert(1)">
<mtext>a</mtext></maction></math>
<math href="javascript:alert(2)"><mi xlink:href="javascript:alert(3)">b</mi></math>
<math><semantics><annotation-xml encoding="text/html"><script>alert(4)</script>
</annotation-xml></semantics></math>
<math><mtext><img src=x onerror=alert(5)></mtext><style>*{color:red}</style>
<svg onload=alert(6)></svg></math>

$\text{<script>alert(7)</script>}$ and $\href{javascript:alert(8)}{click}$ and
$\text{</math><img src=x onerror=alert(9)>}$ and \(\style{color:red}{y}\) and

$$\href{javascript:alert(10)}{\frac{a}{b}}$$"""


def test_math_renders_as_mathml(page, web, model_server):
    model_server.push(Script(text=ANSWER))
    start_conversation(page, web, "emmy")
    ask(page, "How are the mean and the spread defined?")
    answer = page.locator(".msg-assistant .msg-body").last
    expect(answer.locator("math").first).to_be_visible(timeout=15_000)

    maths = answer.locator("math")
    blocks = answer.locator('math[display="block"]')
    assert maths.count() == 6
    assert blocks.count() == 2
    assert answer.locator(".math-display").count() == 2
    for tag in ("mfrac", "msqrt", "msubsup", "msub", "mover", "mtable"):
        assert answer.locator(tag).count() > 0, tag
    # Chromium lays MathML out itself: a fraction's numerator is above its
    # denominator (unknown elements would be inline boxes side by side).
    stacked = blocks.first.locator("mfrac").first.evaluate(
        "frac => frac.children[0].getBoundingClientRect().bottom"
        " <= frac.children[1].getBoundingClientRect().top + 1"
    )
    assert stacked
    # Prices and code are text.
    expect(answer).to_contain_text("costs $5 and $10")
    expect(answer.locator("code")).to_have_text("$x$")
    screenshot(page, "math")

    # On a narrow screen a wide formula scrolls inside its own box, not the page.
    page.set_viewport_size({"width": 390, "height": 800})
    page.reload()
    wide = answer.locator(".math-display").nth(1)
    expect(wide).to_be_visible()
    sizes = wide.evaluate(
        """box => ({scrolls: box.scrollWidth > box.clientWidth,
                    overflow: getComputedStyle(box).overflowX,
                    fits: box.getBoundingClientRect().right <= window.innerWidth})"""
    )
    assert sizes == {"scrolls": True, "overflow": "auto", "fits": True}
    screenshot(page, "math-narrow")
    page.set_viewport_size({"width": 1280, "height": 800})

    # After a reload the page shows the same (the HTML comes from the server).
    page.reload()
    expect(answer.locator("math")).to_have_count(6)

    # The Markdown export keeps the LaTeX source.
    export = page.request.get(page.url.rstrip("/") + "/export.md")
    assert export.ok
    assert r"\bar{x} = \frac{1}{n}\sum_{i=1}^{n} x_i" in export.text()
    assert "<math" not in export.text()


def test_hostile_math_stays_inert(page, web, model_server):
    model_server.push(Script(text=HOSTILE))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    start_conversation(page, web, "mallory")
    ask(page, "Show me some math.")
    answer = page.locator(".msg-assistant .msg-body").last
    expect(answer).to_contain_text("all of which must stay inert", timeout=15_000)
    expect(answer.locator("math").first).to_be_attached()
    page.wait_for_timeout(500)  # time for anything that would fire

    assert dialogs == []
    found = answer.evaluate(
        """body => ({
            scripts: body.querySelectorAll("script, img, svg, style, iframe, maction,"
                + " semantics, annotation-xml").length,
            linked: body.querySelectorAll("math [href], math[href], math a").length,
            handlers: [...body.querySelectorAll("*")].flatMap(
                el => [...el.attributes].map(a => a.name)).filter(
                name => name.startsWith("on") || name === "style" || name.includes("href")),
        })"""
    )
    assert found == {"scripts": 0, "linked": 0, "handlers": []}
    # The raw MathML is shown as text; the LaTeX tricks as math whose text is text.
    expect(answer).to_contain_text('<math><maction actiontype="statusline"')
    expect(answer.locator("mtext", has_text="<script>alert(7)</script>")).to_have_count(1)
    screenshot(page, "math-hostile")
