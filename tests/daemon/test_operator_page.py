"""The operator page in headless Chromium (Debian's ``chromium``, driven by playwright) against
the real simulated daemon (a subprocess at x10, its clock injected and advanced by its own control
loop, a fixed night): it loads with no console errors, follows the dome as it moves, shows the IR
frame and a CCD frame (taken, processed and solved by the daemon) with their overlays, refuses
controls without the token and performs them with it, and STOP acts at once."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest

from test_daemon_process import Daemon, free_port

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed (Debian's chromium; `make test-deps` installs it)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (the dev extra has it)")

#: a fixed night: 22:00 JST, dark, the field below high in the east
NIGHT = {"TENMON_SIM__START_UTC": '"2026-11-21T13:00:00Z"'}
FIELD = {"ra_deg": 45.0, "dec_deg": 40.0}
WAIT_MS = 90_000


def _post(d: Daemon, path: str, body: dict | None = None, token: str | None = None) -> dict:
    req = urllib.request.Request(f"{d.url}/api/v1{path}", method="POST",
                                 data=json.dumps(body or {}).encode(),
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("page")
    d = Daemon(tmp / "data", free_port(), env=NIGHT)
    token = (d.data_dir / "api.token").read_text().strip()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield d, token, browser
        finally:
            browser.close()
            d.stop()


def _az(page) -> float:
    """The dome azimuth the page's dial shows (degrees)."""
    return float(page.text_content("#dial-az").rstrip("°"))


def _open(browser, d, width=1366, height=900):
    page = browser.new_page(viewport={"width": width, "height": height})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.goto(d.url + "/")
    page.wait_for_function("() => document.body.dataset.seq > 0", timeout=WAIT_MS)
    return page, problems


def test_the_page_loads_clean_and_follows_the_dome(site):
    d, token, browser = site
    page, problems = _open(browser, d)
    assert page.inner_text("#verdict") == "SAFE"
    facts = page.inner_text("#facts")
    cli = d.cli("status").stdout
    # the same lines as `tenmon status`, in the same order (values move on between the two)
    assert [ln.split()[0] for ln in facts.splitlines()] == [ln.split()[0] for ln
                                                              in cli.splitlines()]
    start = _az(page)
    _post(d, "/dome/goto", {"azimuth_deg": 120}, token)
    page.wait_for_function("() => document.getElementById('dev-dome').textContent.includes('→ 120.0°')",
                           timeout=WAIT_MS)
    page.wait_for_function("() => Math.abs(parseFloat(document.getElementById('dial-az').textContent)"
                           " - 120) < 1 && document.getElementById('dev-dome').textContent"
                           ".includes('idle')", timeout=WAIT_MS, polling=200)
    assert abs(_az(page) - 120) < 1 and abs(start - 120) > 100
    assert problems == [], problems


def test_the_ir_frame_has_the_encoder_reading_drawn_on_it(site):
    d, token, browser = site
    page, problems = _open(browser, d)
    page.wait_for_function("() => document.getElementById('ir-img').naturalWidth > 0 && "
                           "document.querySelector('#ir-overlay polygon.ov-band')",
                           timeout=WAIT_MS)
    # the picture is remade every few seconds: it comes to show the dome where it now stands
    page.wait_for_function("() => Math.abs(parseFloat(document.querySelector('#ir-overlay "
                           ".ir-label').textContent.slice(8)) - 120) < 3", timeout=WAIT_MS)
    label = page.text_content("#ir-overlay .ir-label")
    status = json.loads(d.cli("status", "--json").stdout)
    m = re.match(r"slit az ([\d.]+)°", label)
    assert m, label
    assert abs(float(m.group(1)) - status["encoder"]["azimuth_deg"]) < 3
    points = page.get_attribute("#ir-overlay polygon.ov-band", "points").split()
    assert len(points) >= 20
    assert "simulated IR view" in page.inner_text("#ir-caption")
    assert problems == [], problems


def test_controls_are_refused_without_the_token_and_done_with_it(site):
    d, token, browser = site
    page, problems = _open(browser, d, width=390, height=844)  # a phone
    page.click("[data-cmd=slit-open]")
    assert page.is_visible("#login")
    assert "need the API token" in page.inner_text("#message")
    page.fill("#token", "not-the-token-at-all")
    page.click("#login-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('login-error').textContent.includes('wrong')")
    page.click("#login-cancel")
    assert not page.is_visible("#login")
    audit = d.cli("audit", "--json").stdout
    assert "/slit/open" not in audit  # nothing was sent
    # a command sent without the token is refused by the API itself
    refused = page.evaluate("() => fetch('/api/v1/slit/open', {method: 'POST'}).then(r => r.status)")
    assert refused == 401
    problems.clear()  # the browser logs that 401 (and the wrong login's) as console errors
    # with the token: log in, confirm, done
    page.click("[data-cmd=slit-open]")
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#confirm:not([hidden])")
    assert "Open the slit?" in page.inner_text("#confirm-text")
    page.click("#confirm-yes")
    page.wait_for_function("() => document.getElementById('message').textContent.startsWith('Done')")
    page.wait_for_function("() => /^(opening|open)/.test(document.getElementById('dev-slit')"
                           ".textContent)", timeout=WAIT_MS)
    assert page.evaluate("() => sessionStorage.getItem('tenmon.token')") == token
    # cancelling the question sends nothing
    page.click("[data-cmd=cover-open]")
    page.click("#confirm-no")
    assert "Cancelled" in page.inner_text("#message")
    assert "/cover/open" not in d.cli("audit", "--json").stdout
    page.wait_for_function("() => document.getElementById('dev-slit').textContent.startsWith('open')",
                           timeout=WAIT_MS)
    page.click("[data-cmd=cover-open]")
    page.click("#confirm-yes")
    page.wait_for_function("() => document.getElementById('dev-cover').textContent.startsWith('open')",
                           timeout=WAIT_MS)
    assert problems == [], problems


def test_a_ccd_frame_is_shown_with_sources_and_its_solve(site):
    d, token, browser = site
    status = json.loads(d.cli("status", "--json").stdout)
    if status["slit"]["state"] != "open" or status["cover"]["state"] != "open":
        d.cli("slit", "open", "--wait")
        d.cli("cover", "open", "--wait")
    page, problems = _open(browser, d)
    _post(d, "/center", {**FIELD, "max_tries": 2, "exposure_s": 5.0}, token)
    page.wait_for_function("() => document.getElementById('ccd-img').naturalWidth > 0 && "
                           "document.querySelector('#ccd-overlay .ccd-label')",
                           timeout=180_000)
    label = page.text_content("#ccd-overlay .ccd-label")
    solve = page.inner_text("#ccd-solve")
    assert re.match(r"\d+ sources", label), label
    assert "sources (green circles)" in solve
    if "solved RA" in label:  # a solved frame shows where it points and the mount's offset
        assert "solved by" in solve and "pointing offset" in solve
        assert page.query_selector("#ccd-overlay line.ccd-offset") is not None
    else:
        assert "not solved" in solve
    assert problems == [], problems


def test_stop_acts_at_once(site):
    d, token, browser = site
    page, problems = _open(browser, d)
    page.evaluate(f"() => sessionStorage.setItem('tenmon.token', {json.dumps(token)})")
    page.reload()
    page.wait_for_function("() => document.body.dataset.seq > 0", timeout=WAIT_MS)
    page.click("#stop-btn")  # no question
    page.wait_for_function("() => document.getElementById('verdict').textContent === 'UNSAFE'",
                           timeout=WAIT_MS)
    assert page.is_hidden("#confirm")
    assert "EMERGENCY STOP" in page.inner_text("#alarms")
    status = json.loads(d.cli("status", "--json").stdout)
    assert status["safety"]["emergency"]
    assert problems == [], problems
    _post(d, "/resume", None, token)
