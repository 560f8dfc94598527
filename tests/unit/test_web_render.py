"""The status page's pure parts: the renderer (report data -> HTML), the SVG timeline, the access
rules. Report data is built here directly, hostile where it can be."""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from certkeeper.web import access
from certkeeper.web.render import (
    SCRIPT,
    STYLE,
    certificate_page,
    content_security_policy,
    login_page,
    scrub,
    status_page,
)
from certkeeper.web.timeline import chart_range, ticks, timeline_svg

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>&"\'><img src=x onerror=alert(1)>'
SVG = "{http://www.w3.org/2000/svg}"


def cert(cert_id: str, health: str = "Ready", *, days: float | None = 60, lifetime: float = 90,
         renew_in: float | None = 30, **extra: Any) -> dict[str, Any]:
    not_after = NOW + timedelta(days=days) if days is not None else None
    return {
        "id": cert_id, "names": [f"{cert_id}.contoso.com"], "issuer": "internal", "health": health,
        "reason": f"{cert_id} is {health}",
        "revision": 1 if not_after else None, "serial": "0a" if not_after else None,
        "fingerprint": "ab" * 32 if not_after else None,
        "not_before": not_after - timedelta(days=lifetime) if not_after else None, "not_after": not_after,
        "renewal_time": NOW + timedelta(days=renew_in) if renew_in is not None and not_after else None,
        "last_failure": None, "last_failure_at": None, "next_attempt_at": None, "rejected": False,
        "pending": False, "awaiting_approval": None, "in_config": True, "deployments": [], **extra,
    }


def report(certs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "at": NOW,
        "status": {"at": NOW, "certificates": certs, "pending_alerts": 0, "failed_alerts": 0},
        "nodes": {"nodes": [], "rows": []},
        "alerts": [],
        "events": [],
    }
    data.update(extra)
    return data


class Elements(HTMLParser):
    """Collects the start tags of a document (to count scripts, find elements)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    return parser


def sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# -- the renderer --------------------------------------------------------------------------------


def test_hostile_ids_names_and_messages_are_text_not_markup() -> None:
    hostile = cert(HOSTILE, "Failing", names=[HOSTILE], reason=HOSTILE, last_failure="CA said " + HOSTILE,
                   deployments=[])
    data = report([hostile], events=[{"at": NOW, "kind": HOSTILE, "certificate": HOSTILE, "node": HOSTILE,
                                      "message": HOSTILE}],
                  alerts=[{"id": 1, "notifier": HOSTILE, "kind": "expiring", "certificate": HOSTILE,
                           "created_at": NOW, "attempts": 2, "next_attempt_at": NOW, "dead": True,
                           "last_error": HOSTILE}],
                  nodes={"nodes": [{"name": HOSTILE, "host": HOSTILE, "version": "1", "heartbeat_at": NOW,
                                    "alive": True, "issuer": True}],
                         "rows": [{"certificate": HOSTILE, "node": HOSTILE, "binding": HOSTILE, "revision": 1,
                                   "current_revision": 1, "state": "deployed", "served_fingerprint": HOSTILE,
                                   "verified_at": NOW, "drift": True, "heartbeat_at": NOW, "alive": False}]})

    html = status_page(data, node=HOSTILE, daemon={"issuer": True, "version": HOSTILE})

    assert HOSTILE not in html
    assert "<img" not in html
    elements = parse(html)
    # one script: the page's own refresh, nothing injected
    assert [tag for tag, _ in elements.tags].count("script") == 1
    assert not any(name.startswith("on") for _, attrs in elements.tags for name in attrs)
    # and the text reads as it was written
    text = "".join(elements.text)
    assert text.count(HOSTILE) >= 8
    # the link to the certificate's page is percent-encoded
    assert "/certificates/%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E" in html


def test_certificate_page_escapes_its_revisions_bindings_and_events() -> None:
    detail = {
        "id": HOSTILE, "names": [HOSTILE], "issuer": HOSTILE, "key_type": "rsa2048", "health": "Failing",
        "reason": HOSTILE, "failure_count": 3, "last_failure": HOSTILE, "next_attempt_at": NOW, "rejected": False,
        "pending": False, "awaiting_approval": HOSTILE, "in_config": False, "source": "config",
        "current": {"revision": 2, "serial": HOSTILE, "fingerprint": HOSTILE, "not_before": NOW,
                    "not_after": NOW + timedelta(days=3), "renewal_time": NOW},
        "revisions": [{"revision": 2, "state": "issued", "origin": HOSTILE, "serial": HOSTILE, "not_before": NOW,
                       "not_after": NOW, "requested_at": NOW, "issued_at": NOW, "revoked_at": None,
                       "error": HOSTILE}],
        "deployments": [{"binding": HOSTILE, "node": HOSTILE, "state": HOSTILE, "revision_id": 7, "revision": 2,
                         "served_fingerprint": HOSTILE, "verified_at": NOW, "error": HOSTILE}],
        "events": [{"at": NOW, "kind": HOSTILE, "message": HOSTILE, "node": HOSTILE}],
    }

    html = certificate_page(detail, NOW, node="cas01")

    assert HOSTILE not in html and "<img" not in html
    assert "".join(parse(html).text).count(HOSTILE) >= 10
    assert "3.0 days left" in html


def test_every_table_header_has_a_scope_and_the_page_a_language() -> None:
    data = report([cert("mail", awaiting_approval="7", pending=True)],
                  events=[{"at": NOW, "kind": "issued", "certificate": "mail", "node": "", "message": "m"}],
                  alerts=[{"id": 1, "notifier": "ops", "kind": "expiring", "certificate": "mail", "created_at": NOW,
                           "attempts": 1, "next_attempt_at": NOW, "dead": False, "last_error": None}],
                  nodes={"nodes": [{"name": "cas01", "host": "h", "version": "1", "heartbeat_at": NOW,
                                    "alive": True, "issuer": True}],
                         "rows": [{"certificate": "mail", "node": "cas01", "binding": "gw", "revision": 1,
                                   "current_revision": 1, "state": "deployed", "served_fingerprint": "ab" * 32,
                                   "verified_at": NOW, "drift": False, "heartbeat_at": NOW, "alive": True}]})
    elements = parse(status_page(data))
    headers = [attrs for tag, attrs in elements.tags if tag == "th"]
    assert len(headers) > 30
    assert all(attrs.get("scope") in ("col", "row") for attrs in headers)
    assert ("html", {"lang": "en"}) in elements.tags
    assert sum(1 for tag, _ in elements.tags if tag == "caption") >= 5


def test_the_csp_hashes_match_the_inline_style_and_script() -> None:
    html = status_page(report([cert("mail")]))
    style = re.search(r"<style>(.*?)</style>", html, re.S)
    script = re.search(r"<script>(.*?)</script>", html, re.S)
    assert style is not None and script is not None
    assert style.group(1) == STYLE and script.group(1) == SCRIPT
    policy = content_security_policy()
    assert f"style-src {sha256_source(style.group(1))}" in policy
    assert f"script-src {sha256_source(script.group(1))}" in policy
    for directive in ("default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "img-src data:"):
        assert directive in policy
    assert "unsafe" not in policy and "http" not in policy


def test_the_static_page_has_its_policy_in_a_meta_element_no_script_and_links_within_the_file() -> None:
    data = report([cert("mail"), cert("owa", "Missing", days=None)])
    details = [{**cert("mail"), "key_type": "rsa2048", "failure_count": 0, "source": "config",
                "revisions": [], "deployments": [], "events": []}]

    html = status_page(data, static=True, details=details)

    elements = parse(html)
    metas = [attrs for tag, attrs in elements.tags if tag == "meta" and attrs.get("http-equiv")]
    assert metas and metas[0]["content"] == content_security_policy(static=True)
    assert "frame-ancestors" not in metas[0]["content"]  # ignored in <meta>; Chromium reports it
    assert "script" not in [tag for tag, _ in elements.tags]
    links = [attrs["href"] for tag, attrs in elements.tags if tag == "a"]
    assert "#cert-mail" in links and not any(link.startswith("/certificates/") for link in links if link)
    assert ("h3", {"id": "cert-mail", "class": "mono"}) in elements.tags
    # nothing is loaded from anywhere: no src, no stylesheet link, the icon is inline
    assert not any("src" in attrs for _, attrs in elements.tags)
    icons = [attrs["href"] for tag, attrs in elements.tags if tag == "link"]
    assert icons and all(href and href.startswith("data:") for href in icons)


def test_an_empty_store_renders_and_says_so() -> None:
    html = status_page(report([]))
    assert "No certificates under management." in html
    svg = ET.fromstring(timeline_svg([], NOW))
    assert svg.findall(f"{SVG}g[@class='mark']") == []


def test_many_certificates_each_get_a_row_and_a_mark() -> None:
    healths = ["Ready", "Renewing", "Expiring", "Failing", "Expired", "Missing"]
    certs = [cert(f"cert-{index:03d}", healths[index % 6], days=None if index % 6 == 5 else index - 20,
                  renew_in=index - 40) for index in range(300)]

    html = status_page(report(certs))

    for item in certs:
        assert f">{item['id']}</a>" in html
    svg = ET.fromstring(re.search(r"<svg.*?</svg>", html, re.S).group(0))  # type: ignore[union-attr]
    marks = svg.findall(f"{SVG}g[@class='mark']")
    assert [mark.get("data-certificate") for mark in marks] == [item["id"] for item in certs]
    assert "200 of 300 certificates need attention" in html


def test_the_verdict_counts_what_needs_attention() -> None:
    fine = status_page(report([cert("a"), cert("b", "Renewing")]))
    assert "All 2 certificates ready or renewing on schedule." in fine
    bad = status_page(report([cert("a"), cert("b", "Expired", days=-2)]))
    assert "1 of 2 certificates needs attention" in bad


def test_pending_requests_are_listed_with_their_request_id() -> None:
    waiting = cert("owa", "Renewing", days=None, pending=True, awaiting_approval="42",
                   reason="Request 42 awaits approval by a CA manager")
    html = status_page(report([cert("mail"), waiting]))
    section = html.split('id="pending-heading"')[1].split("</section>")[0]
    assert ">42</td>" in section and "owa" in section and "mail" not in section


def test_login_page_says_how_to_sign_in_and_never_carries_a_token() -> None:
    html = login_page(error="That token is not the status token.")
    assert "Authorization: Bearer TOKEN" in html and "/login?token=TOKEN" in html
    assert 'method="post" action="/login"' in html and 'type="password"' in html
    assert "<script" not in html


@pytest.mark.parametrize(("text", "shown"), [
    ("POST https://hooks.slack.com/services/T0/B0/secretpart failed", "POST https://hooks.slack.com/… failed"),
    ("to http://user:pw@relay.contoso.com:8080/x?token=abc.", "to http://relay.contoso.com:8080/…"),
    ("https://acme.example", "https://acme.example"),
    ("no url here: mail.contoso.com", "no url here: mail.contoso.com"),
])
def test_scrub_cuts_urls_to_scheme_and_host(text: str, shown: str) -> None:
    assert scrub(text) == shown


# -- the timeline ----------------------------------------------------------------------------------


def test_timeline_draws_validity_renewal_and_expiry_per_certificate() -> None:
    certs = [cert("mail", days=60, renew_in=30), cert("legacy", "Expired", days=-5, renew_in=-20),
             cert("new", "Missing", days=None)]

    svg = ET.fromstring(timeline_svg(certs, NOW))

    assert svg.get("role") == "img"
    assert svg.find(f"{SVG}title").text == "Expiry and renewal timeline"  # type: ignore[union-attr]
    description = svg.find(f"{SVG}desc").text or ""  # type: ignore[union-attr]
    assert "mail: Ready; renews after 2026-12-30 12:00 UTC; expires 2027-01-29 12:00 UTC" in description
    assert "new: Missing; no certificate issued yet" in description
    marks = {mark.get("data-certificate"): mark for mark in svg.findall(f"{SVG}g[@class='mark']")}
    assert list(marks) == ["mail", "legacy", "new"]
    mail = marks["mail"]
    expiry = mail.find(f"{SVG}rect[@class='expiry']")
    renewal = mail.find(f"{SVG}path[@class='renewal']")
    assert expiry is not None and renewal is not None
    assert marks["new"].find(f"{SVG}rect") is None
    # renewal before expiry, both right of now; the expired certificate's expiry left of now
    now_x = float(svg.find(f"{SVG}g[@class='now']/{SVG}line").get("x1"))  # type: ignore[union-attr,arg-type]
    renewal_x = float((renewal.get("d") or "").split()[0][1:])
    assert now_x < renewal_x < float(expiry.get("x") or 0)
    legacy_expiry = marks["legacy"].find(f"{SVG}rect[@class='expiry']")
    assert float(legacy_expiry.get("x") or 0) < now_x  # type: ignore[union-attr]
    # the health shows as a symbol beside the id, not by colour alone
    assert [text.text for text in svg.findall(f"{SVG}g[@class='mark']/{SVG}text")][:2] == ["\u2714 mail",
                                                                                          "\u2716 legacy"]


def test_timeline_escapes_a_hostile_id_and_keeps_everything_inside_the_chart() -> None:
    text = timeline_svg([cert(HOSTILE, days=10_000, renew_in=9_000)], NOW)
    assert "<script" not in text and "<img" not in text
    svg = ET.fromstring(text)
    (mark,) = svg.findall(f"{SVG}g[@class='mark']")
    assert mark.get("data-certificate") == HOSTILE
    width = float(svg.get("width") or 0)
    for element in svg.iter():
        for attribute in ("x", "x1", "x2"):
            if element.get(attribute) is not None:
                assert 0 <= float(element.get(attribute) or 0) <= width


@pytest.mark.parametrize(("span", "label"), [
    (timedelta(hours=20), re.compile(r"^\d\d-\d\d \d\d:\d\d$")),
    (timedelta(days=20), re.compile(r"^\d{4}-\d\d-\d\d$")),
    (timedelta(days=400), re.compile(r"^\d{4}-\d\d$")),
    (timedelta(days=3000), re.compile(r"^\d{4}$")),
])
def test_ticks_are_round_ordered_and_few(span: timedelta, label: re.Pattern[str]) -> None:
    marks = ticks(NOW, NOW + span)
    assert 2 <= len(marks) <= 9
    times = [at for at, _ in marks]
    assert times == sorted(times) and all(NOW <= at <= NOW + span for at in times)
    assert all(label.match(text) for _, text in marks)


def test_chart_range_covers_now_and_every_date_with_a_margin() -> None:
    start, end = chart_range([cert("a", days=30, renew_in=10), cert("b", days=90, renew_in=60)], NOW)
    assert start < NOW < NOW + timedelta(days=90) < end
    # nothing but now: a two-day window around it
    start, end = chart_range([], NOW)
    assert start < NOW < end and timedelta(days=2) <= end - start <= timedelta(days=3)


# -- who may read it ---------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("::ffff:127.0.0.1", True), ("0.0.0.0", False), ("::", False), ("*", False), ("", False),
    ("192.0.2.10", False), ("cas01.contoso.com", False), ("2001:db8::1", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert access.is_loopback(host) is loopback


@pytest.mark.parametrize(("header", "ok"), [
    ("127.0.0.1:9464", True), ("[::1]:9464", True), ("localhost:9464", True), ("localhost", True),
    ("attacker.example:9464", False), ("127.0.0.1.attacker.example", False), (None, False), ("", False),
])
def test_host_header_must_name_this_machine_when_the_page_is_open(header: str | None, ok: bool) -> None:
    assert access.host_is_loopback(header) is ok


def test_startup_problem_names_the_setting_for_an_open_page_beyond_loopback() -> None:
    for host in ("0.0.0.0", "::", "192.0.2.10"):
        problem = access.startup_problem(host, page=True, token_reference=None)
        assert problem is not None and "[daemon] status_token" in problem and "\n" not in problem
    assert access.startup_problem("0.0.0.0", page=True, token_reference="secret:status") is None
    assert access.startup_problem("0.0.0.0", page=False, token_reference=None) is None
    assert access.startup_problem("127.0.0.1", page=True, token_reference=None) is None
    assert access.startup_problem(None, page=True, token_reference=None) is None
    # required client certificates guard the page as a token does
    assert access.startup_problem("0.0.0.0", page=True, token_reference=None, client_certificates=True) is None
    problem = access.startup_problem("0.0.0.0", page=True, token_reference=None, client_certificates=False)
    assert problem is not None and "client_ca_file" in problem


def test_a_session_is_bound_to_the_token_and_expires() -> None:
    token = "t0ken-with-enough-characters"
    value = access.session_value(token, NOW)
    assert token not in value
    assert access.session_valid(token, value, NOW + timedelta(hours=11))
    assert not access.session_valid(token, value, NOW + access.SESSION_LIFETIME)
    assert not access.session_valid("another-token-of-enough-length", value, NOW)
    expires, _, signature = value.partition(".")
    assert not access.session_valid(token, f"{int(expires) + 3600}.{signature}", NOW)  # a longer life, forged
    assert not access.session_valid(token, "garbage", NOW)
    cookie = access.set_cookie(value, secure=True)
    assert cookie.startswith(f"{access.COOKIE}={value};")
    assert all(flag in cookie for flag in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/"))
    assert "Secure" not in access.set_cookie(value, secure=False)


def test_allowed_takes_the_bearer_token_or_a_valid_session() -> None:
    token = "t0ken-with-enough-characters"
    session = access.session_value(token, NOW)
    assert access.allowed(None, authorization=None, cookie_header=None, now=NOW)
    assert access.allowed(token, authorization=f"Bearer {token}", cookie_header=None, now=NOW)
    assert access.allowed(token, authorization=f"bearer  {token} ", cookie_header=None, now=NOW)
    assert not access.allowed(token, authorization=f"Basic {token}", cookie_header=None, now=NOW)
    assert not access.allowed(token, authorization="Bearer wrong", cookie_header=None, now=NOW)
    assert not access.allowed(token, authorization=None, cookie_header=None, now=NOW)
    assert access.allowed(token, authorization=None, cookie_header=f"a=b; {access.COOKIE}={session}", now=NOW)
    assert not access.allowed(token, authorization=None, cookie_header=f"{access.COOKIE}={token}", now=NOW)
    assert access.token_problem("short") is not None and access.token_problem(token) is None


def test_a_client_that_guesses_is_refused_for_the_window_and_others_are_not() -> None:
    wrong = access.WrongTokens(limit=3, window=timedelta(minutes=5), max_clients=2)
    at = [NOW + timedelta(seconds=10 * i) for i in range(3)]
    assert not wrong.record("192.0.2.7", at[0]) and not wrong.record("192.0.2.7", at[1])
    assert wrong.refused_until("192.0.2.7", at[1]) is None  # two wrong tokens: still allowed
    assert wrong.record("192.0.2.7", at[2])  # the third reaches the limit
    assert wrong.refused_until("192.0.2.7", at[2]) == at[0] + timedelta(minutes=5)
    assert wrong.refused_until("198.51.100.9", at[2]) is None  # another address is not affected
    # once the oldest wrong token leaves the window, the address may try again
    assert wrong.refused_until("192.0.2.7", at[0] + timedelta(minutes=5) - timedelta(seconds=1)) is not None
    assert wrong.refused_until("192.0.2.7", at[0] + timedelta(minutes=5)) is None
    # wrong tokens spread wider than the window never add up to a refusal
    slow = access.WrongTokens(limit=3, window=timedelta(minutes=5))
    for minute in range(0, 60, 3):
        slow.record("192.0.2.8", NOW + timedelta(minutes=minute))
        assert slow.refused_until("192.0.2.8", NOW + timedelta(minutes=minute)) is None
    # a flood of addresses is bounded: the oldest is forgotten first
    for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        wrong.record(address, at[2])
    assert "192.0.2.7" not in wrong._seen and len(wrong._seen) == 2
