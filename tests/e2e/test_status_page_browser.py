"""Issue 16 end to end: headless Chromium reads the status page from a running daemon on loopback.

Three certificates in three states: ``mail`` from the built-in CA (Ready), ``legacy`` refused by a
name-constrained CA (Failing), ``owa`` waiting for an AD CS manager's approval (the certsrv double,
tests/fixtures/certsrv.py). The browser must show their ids, health and names and the SVG timeline,
make no request beyond loopback, and report no Content-Security-Policy violation.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certkeeper import config as config_module
from certkeeper.service import Service
from certkeeper.store import events
from tests.fixtures.browser import Tab
from tests.fixtures.certsrv import CertsrvDouble
from tests.fixtures.core import REPO_ROOT, free_port, run_cli, to_toml
from tests.support import wait_for

pytestmark = pytest.mark.e2e

HOSTILE = "<img src=x onerror=alert(1)> & <b>bold</b>"
#: every piece of HTML text whose contrast with its background is under WCAG AA's 4.5:1
LOW_CONTRAST = """() => {
  const parse = (colour) => {
    const parts = colour.match(/rgba?\\(([^)]+)\\)/)[1].split(',').map(Number);
    return {r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1};
  };
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  const luminance = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const background = (element) => {
    for (; element; element = element.parentElement) {
      const colour = parse(getComputedStyle(element).backgroundColor);
      if (colour.a > 0) { return colour; }
    }
    return {r: 255, g: 255, b: 255, a: 1};
  };
  const low = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const text = walker.currentNode.textContent.trim();
    const element = walker.currentNode.parentElement;
    if (!text || element.closest('svg')) { continue; }
    const a = luminance(parse(getComputedStyle(element).color)), b = luminance(background(element));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) { low.push(text.slice(0, 40) + ' ' + ratio.toFixed(2)); }
  }
  return low;
}"""
TOKEN = "browser-status-token-7c1e55d0a3"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def start_daemon(home: Path, log_name: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra_env or {})
    with (home / log_name).open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "certkeeper", "daemon"], env=env, cwd=REPO_ROOT,
                                stdout=log, stderr=subprocess.STDOUT)


def answering(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        return True  # it answers (503 until the first pass is done, 401 behind a token)
    except OSError:
        return False
    return True


def stop(daemon: subprocess.Popen[bytes], home: Path, log_name: str) -> None:
    daemon.send_signal(signal.SIGTERM)
    code = daemon.wait(timeout=60)
    assert code == 0, (home / log_name).read_text()


@pytest.fixture
def three_certificates(home: Path, certsrv_factory: Any) -> Iterator[tuple[str, CertsrvDouble]]:
    """A store with mail (Ready), legacy (Failing) and owa (awaiting approval), and a daemon
    serving its page at the returned base URL."""
    double: CertsrvDouble = certsrv_factory("basic")
    double.mode = "pending"
    port = free_port()
    (home / "certkeeper.toml").write_text(to_toml({
        "issuers": {"locked": {"type": "internal-ca", "name_constraints": ["fabrikam.com"]},
                    "corp": {"type": "adcs", **double.options(poll_minutes=60)}},
        "certificates": [
            {"id": "mail", "names": ["mail.contoso.com", "autodiscover.contoso.com"]},
            {"id": "legacy", "names": ["legacy.contoso.com"], "issuer": "locked"},
            {"id": "owa", "names": ["owa.contoso.com"], "issuer": "corp"},
        ],
        "daemon": {"metrics_address": f"127.0.0.1:{port}", "node": "cas01", "reconcile_minutes": 60},
    }))
    renewed = run_cli("renew")
    assert renewed.returncode == 1, renewed.stdout + renewed.stderr  # legacy refused, owa pending
    with Service.open(config_module.load()) as service, service.store.session() as session:
        events.record(session, "note", HOSTILE, at=service.clock.now(), certificate_id="mail", node="cas01")
    daemon = start_daemon(home, "daemon.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answering(base + "/healthz"), 60, interval=0.2, what="the daemon's HTTP server")
        yield base, double
    finally:
        stop(daemon, home, "daemon.log")


def test_chromium_renders_the_status_page_from_a_running_daemon(three_certificates: tuple[str, CertsrvDouble],
                                                                tab: Tab, tmp_path: Path) -> None:
    base, double = three_certificates
    page = tab.page

    response = page.goto(base + "/", wait_until="load")

    assert response is not None and response.status == 200
    policy = response.headers.get("content-security-policy", "")
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers.get("x-content-type-options") == "nosniff"
    assert response.headers.get("referrer-policy") == "no-referrer"

    # every certificate: its id, names, health (as text) and why
    rows = {cert_id: page.locator(f'#certificates tr[data-certificate="{cert_id}"]').inner_text()
            for cert_id in ("mail", "legacy", "owa")}
    assert "mail.contoso.com" in rows["mail"] and "autodiscover.contoso.com" in rows["mail"]
    assert "Ready" in rows["mail"] and "internal" in rows["mail"]
    assert "legacy.contoso.com" in rows["legacy"] and "Failing" in rows["legacy"]
    assert "name constraints" in rows["legacy"]
    assert "owa.contoso.com" in rows["owa"] and "corp" in rows["owa"]
    assert "awaits approval by a CA manager" in rows["owa"]
    # the AD CS request under pending requests, with its request id
    (request_id,) = double.requests
    pending = page.locator("section", has=page.locator("#pending-heading")).inner_text()
    assert "owa" in pending and str(request_id) in pending
    # the timeline: an SVG drawn on the page, one mark per certificate, described in words
    chart = page.locator("svg.timeline")
    assert chart.is_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 500 and box["height"] > 100
    marks = page.locator("svg.timeline g.mark")
    assert marks.count() == 3
    assert sorted(marks.nth(i).get_attribute("data-certificate") or "" for i in range(3)) == ["legacy", "mail", "owa"]
    assert "mail: Ready" in (page.locator("svg.timeline desc").text_content() or "")
    # a hostile event message is shown as text and runs nothing
    events_text = page.locator("section", has=page.locator("#events-heading")).inner_text()
    assert HOSTILE in events_text
    assert page.locator("main img").count() == 0 and page.locator("main b").count() == 0
    assert tab.dialogs == []
    # readable: the language is set, every text has WCAG AA contrast, the chart has a name
    assert page.get_attribute("html", "lang") == "en"
    assert page.evaluate(LOW_CONTRAST) == []
    assert chart.get_attribute("role") == "img" and chart.get_attribute("aria-labelledby")

    screenshot = tmp_path / "status.png"
    page.screenshot(path=str(screenshot), full_page=True)
    width, height = png_size(screenshot)
    assert width >= 1000 and height >= 900 and screenshot.stat().st_size > 30_000

    # a certificate's own page: revisions, bindings, events
    page.locator('#certificates a[href="/certificates/mail"]').click()
    page.wait_for_url(base + "/certificates/mail")
    assert "Revisions" in page.locator("main").inner_text()
    assert page.locator("main table").first.locator("tbody tr").count() >= 1
    assert "issued" in page.locator("main").inner_text()
    page.screenshot(path=str(tmp_path / "certificate.png"), full_page=True)
    assert png_size(tmp_path / "certificate.png")[1] >= 500

    # nothing left loopback, nothing was blocked, nothing failed
    assert tab.hosts() <= {"127.0.0.1", "data"}, tab.requests
    assert base + "/" in tab.requests and base + "/certificates/mail" in tab.requests
    assert tab.violations() == []
    assert not [line for line in tab.console if "Content Security Policy" in line or "Refused" in line], \
        tab.console
    assert tab.errors == []

    # and the recorder does see a violation: an image from elsewhere is blocked by the policy
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<img src=\"http://127.0.0.1:9/probe.png\">')")
    wait_for(lambda: tab.violations(), 5, what="the policy to block the probe image")
    assert any("img-src" in violation for violation in tab.violations())
    # and the contrast check does see faint text (set through the CSSOM, which the policy allows)
    page.evaluate("(() => { const p = document.createElement('p'); p.textContent = 'faint probe';"
                  " p.style.color = '#cccccc'; document.body.appendChild(p); })()")
    assert [line for line in page.evaluate(LOW_CONTRAST) if line.startswith("faint probe")]


def test_chromium_signs_in_with_the_form_and_gets_an_http_only_cookie(home: Path, tab: Tab) -> None:
    port = free_port()
    (home / "certkeeper.toml").write_text(to_toml({
        "certificates": [{"id": "mail", "names": ["mail.contoso.com"]}],
        "daemon": {"metrics_address": f"127.0.0.1:{port}", "node": "cas01", "reconcile_minutes": 60,
                   "status_token": "env:CERTKEEPER_TEST_STATUS_TOKEN"},
    }))
    daemon = start_daemon(home, "daemon-token.log", {"CERTKEEPER_TEST_STATUS_TOKEN": TOKEN})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answering(base + "/healthz"), 60, interval=0.2, what="the daemon's HTTP server")
        page = tab.page
        response = page.goto(base + "/")
        assert response is not None and response.status == 401
        assert "This page needs the status token" in page.locator("main").inner_text()
        assert "mail.contoso.com" not in page.content()

        page.fill("#token", "not-the-token-but-long-enough")
        page.click("button[type=submit]")
        page.wait_for_load_state()
        assert "That token is not the status token." in page.locator("main").inner_text()
        assert tab.page.context.cookies() == []

        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")
        wait_for(lambda: page.locator("svg.timeline").count() == 1, 10, what="the status page after the login")
        assert "mail.contoso.com" in page.locator("#certificates").inner_text()
        (cookie,) = page.context.cookies()
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]
        assert page.evaluate("document.cookie") == ""  # HttpOnly: no script on the page can read it
        assert TOKEN not in page.content()
        assert tab.violations() == [] and tab.errors == []
        assert tab.hosts() <= {"127.0.0.1", "data"}, tab.requests
    finally:
        stop(daemon, home, "daemon-token.log")
    assert TOKEN not in (home / "daemon-token.log").read_text()
