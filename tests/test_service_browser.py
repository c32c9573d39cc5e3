"""The listening page in a real browser (Debian's headless Chromium driven by Playwright) against a real
server: type a query, see ranked results, play one from its segment, drop a clip, classify a clip.

Each test leaves a screenshot in its tmp_path and in tests/output/ (git-ignored), and prints its path.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest
from playwright import sync_api

from indexer import BuildOptions, build_index
from tests import helpers
from tests.service_support import RATE, running_service, steps, tone, tone_environment, wav_bytes

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parent / "output"
# Not a skip: CI installs Chromium (.ci/run), and a browser test that silently skips tests nothing.
assert CHROMIUM.is_file(), f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)"


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index in which each query of the tests has one best segment: 880 Hz only at 12-14 s of a 24 s
    file (playback must start there, not at 0), 330 Hz only at 2-4 s of another, 660 Hz in one clip."""
    root = tmp_path_factory.mktemp("service_browser")
    corpus = root / "corpus"
    helpers.write_audio(corpus / "long" / "walk.wav", steps(*(220,) * 6, 880, *(220,) * 5), rate=RATE)
    helpers.write_audio(corpus / "mixed" / "steps.wav", steps(220, 330, 440), rate=RATE)
    helpers.write_audio(corpus / "tones" / "a660.ogg", tone(660), rate=RATE)
    (root / "model.tones").write_text("test encoder")
    with tone_environment(root / "cache"):
        build_index(corpus, root / "index", BuildOptions(model=str(root / "model.tones"), decode_workers=0))
    return root


@pytest.fixture(scope="module")
def url(tones: Path) -> str:
    with tone_environment(tones / "cache"), running_service(tones / "index") as url:
        yield url


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    with sync_api.sync_playwright() as playwright:
        # No browser download: the system's Chromium. Autoplay is allowed so that play() never depends on
        # how the browser judges a synthetic click.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=["--autoplay-policy=no-user-gesture-required"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, url: str, tmp_path: Path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """A fresh page on the service; fails the test on any console error or uncaught exception, and
    leaves a screenshot of how the page ended."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.expected_errors = []  # type: ignore[attr-defined]  # what a test provokes on purpose
    page.goto(url)
    sync_api.expect(page.locator("#index-info")).to_contain_text("segments of")
    yield page
    shot = tmp_path / f"{request.node.name}.png"
    page.screenshot(path=str(shot), full_page=True)
    OUTPUT.mkdir(exist_ok=True)
    kept = shutil.copy(shot, OUTPUT / shot.name)
    print(f"screenshot: {shot} (and {kept})")
    context.close()
    assert [p for p in problems if not any(e in p for e in page.expected_errors)] == [], problems


def test_type_a_query_see_results_and_play_from_the_segment(page) -> None:  # type: ignore[no-untyped-def]
    expect = sync_api.expect
    audio_statuses: list[int] = []
    page.on("response", lambda r: audio_statuses.append(r.status) if "/api/files/" in r.url else None)

    page.select_option("#mode", "vector")  # the sound alone: the folder tones/ names what "tone" also says
    page.fill("#q", "a tone of 880 Hz")
    page.press("#q", "Enter")
    hits = page.locator("#results .hit")
    expect(hits.first.locator(".name")).to_have_text("walk.wav")
    expect(hits.first.locator(".score")).to_have_text("1.000")
    expect(hits.first.locator(".span")).to_have_text("12.00–14.00 s")
    expect(page.locator("#results-title")).to_have_text("Results for “a tone of 880 Hz”")
    assert page.url.endswith("?q=a+tone+of+880+Hz")  # the query is in the address, to share or reload
    page.wait_for_function("() => [...document.querySelectorAll('#results .waveform')]"
                           ".every(img => img.complete && img.naturalWidth === 480)")

    # Where playback really began, recorded by the page itself at the first `playing` event.
    page.evaluate("""() => { const p = document.querySelector('#player');
        p.addEventListener('playing', () => { window.startedAt = p.currentTime; }, { once: true }); }""")
    hits.first.locator(".play").click()
    page.wait_for_function("() => window.startedAt !== undefined")
    started = page.evaluate("window.startedAt")
    assert 12.0 <= started < 12.25, started  # the segment's start, not the file's
    player = page.locator("#player")
    assert "/audio#t=12.000" in player.get_attribute("src")
    page.wait_for_function("(t) => { const p = document.querySelector('#player'); "
                           "return !p.paused && p.currentTime > t + 0.5; }", arg=started)
    expect(hits.first).to_have_class("hit playing")
    expect(page.locator("#now-playing")).to_have_text("walk.wav from 12.00 s")
    assert 206 in audio_statuses, audio_statuses  # the player fetched byte ranges

    # A result of another file switches the player to that file, at its own segment.
    page.fill("#q", "330")
    page.press("#q", "Enter")
    expect(hits.first.locator(".name")).to_have_text("steps.wav")
    page.evaluate("""() => { const p = document.querySelector('#player'); window.startedAt = undefined;
        p.addEventListener('playing', () => { window.startedAt = p.currentTime; }, { once: true }); }""")
    hits.first.locator(".play").click()
    page.wait_for_function("() => window.startedAt !== undefined")
    assert 2.0 <= page.evaluate("window.startedAt") < 2.25
    expect(page.locator("#now-playing")).to_have_text("steps.wav from 2.00 s")

    # One hit per file: walk.wav's eleven 220 Hz windows make one result; its other windows at least as high
    # as the last hit are buttons (its one 880 Hz window ranks below: not listed) that play from their start.
    page.fill("#q", "220")
    page.press("#q", "Enter")
    expect(hits).to_have_count(3)
    buttons = page.locator("#results .hit", has_text="walk.wav").locator(".hit-windows button")
    expect(buttons).to_have_count(10)
    expect(buttons.filter(has_text="12.00–14.00 s")).to_have_count(0)
    start = buttons.last.inner_text().split("–")[0]
    buttons.last.click()
    expect(page.locator("#now-playing")).to_have_text(f"walk.wav from {start.strip()} s")


def test_drop_a_clip_to_find_similar_sounds(page) -> None:  # type: ignore[no-untyped-def]
    clip = base64.b64encode(wav_bytes(tone(660))).decode()
    transfer = page.evaluate_handle("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], 'my clip.wav', { type: 'audio/wav' }));
        return transfer; }""", clip)
    page.dispatch_event("#drop-similar", "drop", {"dataTransfer": transfer})
    sync_api.expect(page.locator("#results-title")).to_have_text("Sounds like my clip.wav")
    first = page.locator("#results .hit").first
    sync_api.expect(first.locator(".name")).to_have_text("a660.ogg")
    sync_api.expect(first.locator(".score")).to_have_text("1.000")


def test_classify_a_clip_and_see_label_probabilities_as_bars(page) -> None:  # type: ignore[no-untyped-def]
    page.click("#classify-options summary")
    page.fill("#labels", "220 Hz\n440 Hz\n880 Hz")
    page.set_input_files("#file-classify", files=[{"name": "clip.wav", "mimeType": "audio/wav",
                                                   "buffer": wav_bytes(tone(440))}])
    rows = page.locator("#label-bars .label-row")
    sync_api.expect(rows).to_have_count(3)
    sync_api.expect(rows.first.locator(".label")).to_have_text("440 Hz")
    sync_api.expect(rows.first.locator(".probability")).to_have_text("100.0%")  # e^10 / (e^10 + 2)
    widths = rows.locator(".bar").evaluate_all("bars => bars.map(bar => parseFloat(bar.style.width))")
    assert widths == [100.0, 0.0, 0.0]
    sync_api.expect(page.locator("#classification-title")).to_have_text(
        "Labels for clip.wav (custom: 3 labels, templates prompts)")


def test_a_refused_clip_shows_the_reason(page) -> None:  # type: ignore[no-untyped-def]
    page.expected_errors.append("status of 400 (Bad Request)")  # the browser logs the refused upload
    page.set_input_files("#file-similar", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                  "buffer": b"these are words, not sound"}])
    status = page.locator("#status")
    sync_api.expect(status).to_have_class("error")
    sync_api.expect(status).to_contain_text("400: the uploaded clip notes.txt cannot be decoded: not an audio file")


def test_filters_narrow_a_search_from_the_page(page) -> None:  # type: ignore[no-untyped-def]
    """Unfiltered, the 880 Hz window of walk.wav leads; with the path pattern tones/* only the tones folder
    is searched (one segment), and with the extension wav and at most 10 s only steps.wav (one hit, its best
    window)."""
    expect = sync_api.expect
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/api/query" in r.url else None)
    page.locator("#filters summary").click()
    page.fill("#f-glob", "tones/*")
    page.fill("#q", "a tone of 880 Hz")
    page.press("#q", "Enter")
    hits = page.locator("#results .hit")
    expect(hits).to_have_count(1)
    expect(hits.first.locator(".name")).to_have_text("a660.ogg")
    page.fill("#f-glob", "")
    page.fill("#f-ext", "wav, mp3")
    page.fill("#f-max-duration", "10")
    page.press("#q", "Enter")
    expect(hits).to_have_count(1)  # one hit per file: steps.wav, its other windows as buttons
    expect(hits.first.locator(".name")).to_have_text("steps.wav")
    assert all(p in requests[-1] for p in ("ext=wav&ext=mp3", "max_duration=10")), requests[-1]
    page.fill("#f-tag", "genre")  # not key=value: the API's refusal is shown
    page.expected_errors.append("400")  # type: ignore[attr-defined]
    page.press("#q", "Enter")
    expect(page.locator("#status")).to_contain_text("tag filter 'genre' is not key=value")
