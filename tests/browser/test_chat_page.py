import json
import re

import pytest
from playwright.sync_api import expect

from chat.models import Output
from tests.browser.conftest import screenshot
from tests.support.scripted_model import Script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.integration]

ANSWER = (
    "Here is a quick summary:\n\n"
    "| metric | value |\n|---|---|\n| mean | 4.2 |\n| max | 9 |\n\n"
    "```python\nprint(sum(range(10)))\n```\n\nThe **total** is 45."
)


def sign_up(page, web, username):
    page.goto(f"{web}/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill("correct-horse-battery-staple")
    page.get_by_label("Password confirmation").fill("correct-horse-battery-staple")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("button", name="New conversation")).to_be_visible()


def test_a_new_user_chats_and_sees_the_history_after_a_reload(page, web, model_server):
    model_server.push(Script(text=ANSWER, delay=0.04))
    sign_up(page, web, "ada")
    screenshot(page, "01-home")
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("#connection")).to_have_text("Connected")
    screenshot(page, "02-empty-conversation")

    page.get_by_label("Message").fill("Summarise the numbers, please.")
    page.get_by_label("Message").press("Enter")
    streaming = page.locator(".msg-assistant .msg-body.streaming")
    expect(streaming).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(streaming).to_contain_text("summary")
    screenshot(page, "03-streaming")

    transcript = page.get_by_role("log", name="Conversation")
    expect(transcript.locator("table")).to_be_visible(timeout=15_000)
    expect(transcript.locator("strong", has_text="total")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.locator("#conversation-title")).to_have_text("Summarise the numbers, please.")
    screenshot(page, "04-answered")

    page.reload()
    expect(transcript.get_by_text("Summarise the numbers, please.")).to_be_visible()
    expect(transcript.locator("table")).to_be_visible()
    expect(transcript.locator("pre.code")).to_contain_text("print(sum(range(10)))")
    assert page.locator(".msg").count() == 2


def test_a_failed_reply_shows_the_reason_and_retry_works(page, web, model_server):
    model_server.push(Script(status=500), Script(text="Recovered."))
    sign_up(page, web, "grace")
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("#connection")).to_have_text("Connected")
    page.get_by_label("Message").fill("Hello?")
    page.get_by_role("button", name="Send").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("HTTP 500")
    screenshot(page, "08-model-error")
    alert.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("log", name="Conversation")).to_contain_text("Recovered.")
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(page.get_by_role("log", name="Conversation").get_by_text("Hello?")).to_have_count(1)


def test_another_user_cannot_open_the_conversation(page, web, browser, model_server):
    sign_up(page, web, "owner1")
    page.get_by_role("button", name="New conversation").click()
    expect(page).to_have_url(re.compile(r"/c/[0-9a-f-]+/$"))
    private_url = page.url

    other = browser.new_context()
    intruder = other.new_page()
    sign_up(intruder, web, "intruder")
    response = intruder.goto(private_url)
    assert response.status == 404
    expect(intruder.get_by_role("heading", name="Not found")).to_be_visible()
    other.close()


def test_an_uploaded_csv_is_analysed_with_a_live_cell_and_a_plot(
    page, web, browser, model_server, tmp_path
):
    from chat.models import SandboxRecord

    csv = tmp_path / "sales.csv"
    csv.write_text("month,sales\n" + "".join(f"{m},{90 + 7 * m}\n" for m in range(1, 13)))
    code = (
        "import pandas as pd, time\n"
        "df = pd.read_csv('sales.csv')\n"
        "print('rows:', len(df), flush=True)\n"
        "time.sleep(1.5)\n"
        "ax = df.plot(x='month', y='sales', title='Sales by month')\n"
        "ax.figure.savefig('trend.png')\n"
        "plt.show()"
    )
    model_server.push(
        Script(chunks=["I will load the file and plot it.\n<execute>\n", code, "\n</execute>"]),
        Script(text="Sales grew steadily, by **7 per month**. The chart is saved as `trend.png`."),
    )
    sign_up(page, web, "ines")
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("#connection")).to_have_text("Connected")
    page.get_by_label("Upload files").set_input_files(str(csv))
    expect(page.locator("#files-count")).to_have_text("1")

    page.get_by_label("Message").fill("Plot the sales trend of my CSV.")
    page.get_by_label("Message").press("Enter")
    cell = page.get_by_role("region", name="Code cell 1")
    expect(cell.locator(".cell-status")).to_have_text("Running…", timeout=20_000)
    # Live, before the end: the cell sleeps 1.5 s after printing. A new sandbox (gVisor,
    # no warm pool in tests) imports its libraries first, which can take seconds.
    expect(cell.locator(".output-stream")).to_have_text("rows: 12\n", timeout=20_000)
    expect(cell.locator(".cell-status")).to_have_text("Running…")
    screenshot(page, "05-running-cell")

    image = cell.locator("img.output-image")
    expect(image).to_be_visible(timeout=20_000)
    assert image.evaluate("img => img.complete && img.naturalWidth") > 0
    expect(cell.locator(".cell-status")).to_have_text("Done")
    expect(page.locator(".msg-final")).to_contain_text("7 per month", timeout=10_000)
    expect(page.locator("#files-count")).to_have_text("2")
    screenshot(page, "06-analysis-with-plot")

    page.locator("#files-menu summary").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="trend.png").click()
    assert download.value.suggested_filename == "trend.png"
    screenshot(page, "07-files")

    # Another user gets nothing: not the page, not the plot, not the file.
    urls = [
        page.url,
        image.get_attribute("src"),
        page.get_by_role("link", name="trend.png").get_attribute("href"),
        page.url + "export.ipynb",
    ]
    other = browser.new_context()
    intruder = other.new_page()
    sign_up(intruder, web, "mallory")
    for url in urls:
        assert intruder.request.get(web + url if url.startswith("/") else url).status == 404
    other.close()
    for record in SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE):
        from chat.worker import pool

        pool.remove(record, "test")


def remove_sandboxes():
    from chat.models import SandboxRecord
    from chat.worker import pool

    for record in SandboxRecord.objects.filter(state__in=SandboxRecord.LIVE):
        pool.remove(record, "test")


def start_conversation(page, web, username):
    sign_up(page, web, username)
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("#connection")).to_have_text("Connected")


def ask(page, text):
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")


def test_stop_during_a_long_cell(page, web, model_server):
    code = (
        "import time\nfor i in range(600):\n    print('tick', i, flush=True)\n    time.sleep(0.1)"
    )
    model_server.push(Script(chunks=["Counting.\n<execute>\n", code, "\n</execute>"]))
    start_conversation(page, web, "stopper")
    ask(page, "Count for a minute")
    cell = page.get_by_role("region", name="Code cell 1")
    expect(cell.locator(".output-stream")).to_contain_text("tick 3", timeout=20_000)
    page.get_by_role("button", name="Stop").click()
    expect(cell.locator(".cell-status")).to_have_text("Stopped", timeout=10_000)
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.get_by_role("button", name="Regenerate")).to_be_visible()
    screenshot(page, "09-stopped-cell")
    remove_sandboxes()


def test_a_reload_mid_turn_shows_the_text_so_far_and_continues(page, web, model_server):
    words = [f"word{i} " for i in range(50)]
    model_server.push(Script(chunks=words, delay=0.08))
    start_conversation(page, web, "reloader")
    ask(page, "Say fifty words")
    streaming = page.locator(".msg-assistant .msg-body.streaming")
    expect(streaming).to_contain_text("word8")
    page.reload()
    expect(page.locator("#connection")).to_have_text("Connected")
    answer = page.locator(".msg-assistant .msg-body")
    expect(answer).to_contain_text("word8")  # what was written before the reload
    expect(answer).to_have_text("".join(words).strip(), timeout=15_000)
    assert page.locator(".msg-assistant").count() == 1


def test_a_dropped_socket_resyncs_without_gaps_or_duplicates(page, web, model_server):
    words = [f"w{i} " for i in range(60)]
    model_server.push(Script(chunks=words, delay=0.05))
    routes = []

    def through(route):
        route.connect_to_server()
        routes.append(route)

    page.route_web_socket(re.compile(r"/ws/conversations/"), through)
    start_conversation(page, web, "dropper")
    ask(page, "Say sixty words")
    expect(page.locator(".msg-assistant .msg-body.streaming")).to_contain_text("w5 ")
    routes[-1].close()  # the connection drops mid-stream
    expect(page.locator(".msg-assistant .msg-body")).to_have_text(
        "".join(words).strip(), timeout=20_000
    )
    assert len(routes) >= 2, "the page reconnected"
    assert page.locator(".msg-assistant").count() == 1
    assert page.locator(".msg-user").count() == 1


def test_hostile_model_output_and_tables_stay_inert(page, web, model_server):
    reply = (
        'Look: <script>alert("a")</script> <img src="http://evil.example/a.png" onerror="alert(2)">'
        " [click](javascript:alert(3)) ![pic](http://evil.example/b.png)\n<execute>\n"
        "from IPython.display import HTML, display\n"
        'display(HTML(\'<table><tr><td onclick="alert(4)">cell</td></tr></table>'
        '<script>alert(5)</script><img src="http://evil.example/c.png" onerror="alert(6)">\'))\n'
        "print('<script>alert(7)</script>')\n</execute>"
    )
    model_server.push(Script(text=reply), Script(text='Done <b onmouseover="alert(8)">bold</b>'))
    dialogs, outside = [], []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda r: outside.append(r.url) if "127.0.0.1" not in r.url else None)
    start_conversation(page, web, "eve")
    ask(page, "Show me something")
    cell = page.get_by_role("region", name="Code cell 1")
    expect(cell.locator(".output-html td")).to_have_text("cell", timeout=20_000)
    expect(cell.locator(".output-stream")).to_have_text("<script>alert(7)</script>\n")
    # raw HTML from the model is shown as text, never parsed
    expect(page.locator(".msg-final")).to_contain_text('Done <b onmouseover="alert(8)">bold</b>')
    cell.locator(".output-html td").click()
    page.locator(".msg-final").hover()
    for link in page.locator(".transcript a").all():
        assert not (link.get_attribute("href") or "").startswith("javascript:")
    assert (
        page.locator(".transcript script, .transcript img[onerror], .transcript [onclick]").count()
        == 0
    )
    page.wait_for_timeout(300)
    assert dialogs == [] and outside == []
    screenshot(page, "10-hostile-output")
    remove_sandboxes()


def test_a_file_over_the_limit_is_refused_before_it_is_sent(page, web, model_server, tmp_path):
    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * (3 << 20))  # the suite's limit is 2 MB
    sent = []
    page.on("request", lambda r: sent.append(r.url) if "/files/" in r.url else None)
    start_conversation(page, web, "uploader")
    page.get_by_label("Upload files").set_input_files(str(big))
    expect(page.locator("#composer-hint")).to_contain_text(
        "big.csv is larger than the 2.0 MB limit; nothing was uploaded."
    )
    expect(page.locator("#files-count")).to_have_text("0")
    assert sent == []


def test_a_user_deletes_a_file_and_another_tab_sees_it_go(
    page, web, browser, model_server, tmp_path
):
    notes = tmp_path / "notes.txt"
    notes.write_text("draft\n")
    start_conversation(page, web, "tidy")
    page.get_by_label("Upload files").set_input_files(str(notes))
    expect(page.locator("#files-count")).to_have_text("1")
    second = page.context.new_page()  # the same user in a second tab
    second.goto(page.url)
    expect(second.locator("#files-count")).to_have_text("1")

    page.locator("#files-menu summary").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete notes.txt").click()
    expect(page.locator("#files-count")).to_have_text("0")
    expect(page.locator("#composer-hint")).to_contain_text("Deleted notes.txt.")
    screenshot(page, "12-file-deleted")
    expect(second.locator("#files-count")).to_have_text("0")
    second.close()


def test_a_cell_over_its_output_limit_says_what_was_not_kept(page, web, model_server):
    flood = "for i in range(30_000):\n    print(f'{i:>6} ' + 'x' * 60)"
    model_server.push(
        Script(text=f"<execute>\n{flood}\n</execute>"), Script(text="That was a lot of output.")
    )
    start_conversation(page, web, "flooder")
    ask(page, "Print a big table")
    cell = page.get_by_role("region", name="Code cell 1")
    expect(cell.locator(".cell-status")).to_have_text("Done", timeout=30_000)
    expect(cell.locator(".cell-dropped")).to_contain_text(
        "Over this cell's output limits, not kept:"
    )
    expect(cell.locator(".cell-dropped")).to_contain_text("of printed output")
    screenshot(page, "13-output-over-the-limit")
    remove_sandboxes()


def test_a_page_that_missed_a_big_cell_catches_up_in_parts(page, web, model_server):
    """The page misses a cell's live output (2 MiB printed, 1 MiB kept); its resync is
    over Daphne's 1 MiB websocket message limit, so it comes in `part` frames."""
    flood = "for i in range(30_000):\n    print(f'{i:>6} ' + 'x' * 60)"
    model_server.push(Script(text=f"<execute>\n{flood}\n</execute>"), Script(text="Printed."))
    parts = []

    def lossy(ws):
        server = ws.connect_to_server()

        def from_server(message):
            kind = json.loads(message)["type"]
            if kind in ("output", "output_delta"):
                return  # lost: the page sees a gap at the cell's next change
            if kind == "part":
                parts.append(len(message))
            ws.send(message)

        server.on_message(from_server)

    page.route_web_socket(re.compile(r"/ws/conversations/"), lossy)
    start_conversation(page, web, "part-reader")
    ask(page, "Print a big table")
    cell = page.get_by_role("region", name="Code cell 1")
    expect(cell.locator(".cell-status")).to_have_text("Done", timeout=30_000)
    expect(page.locator(".msg-assistant").last).to_contain_text("Printed.")
    kept = Output.objects.get(conversation__owner__username="part-reader").text
    shown = cell.locator(".output-stream")
    expect(shown).to_have_count(1)
    assert shown.evaluate("node => node.textContent") == kept
    assert len(parts) >= 2 and max(parts) < 1 << 20
    remove_sandboxes()


def test_the_title_filter_works_on_the_home_page_too(page, web, model_server, django_user_model):
    """The sidebar's filter is the sidebar's: it works wherever the sidebar is."""
    from tests.factories import ConversationFactory

    sign_up(page, web, "filterer")
    owner = django_user_model.objects.get(username="filterer")
    for title in ("Sales by region", "Weather in Oslo", "Regional margins"):
        ConversationFactory(owner=owner, title=title)
    page.goto(f"{web}/")
    links = page.locator(".conv-link")
    expect(links).to_have_count(3)
    page.get_by_label("Filter conversations").fill("regio")
    expect(page.locator(".conv-link:visible")).to_have_count(2)
    expect(page.get_by_role("link", name="Weather in Oslo")).to_be_hidden()
    page.get_by_label("Filter conversations").fill("nothing like it")
    expect(page.locator("#filter-empty")).to_be_visible()
    page.get_by_label("Filter conversations").fill("")
    expect(page.locator(".conv-link:visible")).to_have_count(3)
