"""Report data -> HTML: the status page, a certificate's page, the sign-in page. Pure.

The input is what :mod:`certkeeper.reports` returns (plain data, no key material); nothing here
reads the store or the network, so ``certkeeper status --html`` and the daemon's page are the same
renderer and the tests render hostile data directly.

Why Jinja2 with autoescaping instead of ``html.escape`` by hand: every value on these pages
(certificate ids, names, CA error messages, event texts) could hold ``<`` or ``"``, and with
``autoescape=True`` each one is escaped unless a line of this module marks it safe on purpose
(:class:`markupsafe.Markup`: the CSS, the script, the SVG that ElementTree escaped). A forgotten
``escape()`` is then impossible, not just unlikely. ``StrictUndefined`` turns a misspelt field
into an error in the tests instead of an empty cell.

Free text from outside certkeeper (errors, event messages) also goes through :func:`scrub`, which
cuts every URL down to its scheme and host: a webhook's secret lives in its path or query.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from certkeeper.web.access import SESSION_LIFETIME
from certkeeper.web.timeline import HEALTH_SYMBOLS, timeline_svg

#: the order health states are counted in, worst last
HEALTH_ORDER = ("Ready", "Renewing", "Expiring", "Failing", "Expired", "Missing")
#: states that need nobody
FINE = frozenset({"Ready", "Renewing"})

_TEMPLATES = files("certkeeper.web").joinpath("templates")
STYLE = _TEMPLATES.joinpath("style.css").read_text(encoding="utf-8")
SCRIPT = _TEMPLATES.joinpath("refresh.js").read_text(encoding="utf-8")
#: a shield with a check mark, inline (no request for /favicon.ico)
FAVICON = "data:image/svg+xml," + quote(
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M8 1 2 3v5c0 3.5 2.6 6 6 7 '
    '3.4-1 6-3.5 6-7V3z" fill="#102a43"/><path d="m5 8 2 2 4-4" stroke="#fff" stroke-width="1.8" '
    'fill="none"/></svg>', safe="")

_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)(?:[^\s/?#@]*@)?([^\s/?#]+)([^\s]*)")


def _sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def content_security_policy(*, static: bool = False) -> str:
    """The page's policy: nothing from anywhere, except its own inline style and script (by hash),
    ``data:`` images (the icon) and, served, the sign-in form posting to itself.

    The static file gets it in a ``<meta>`` element, where ``frame-ancestors`` is ignored (and
    reported), so it is left out there; the daemon sends it as a header with it.
    """
    parts = ["default-src 'none'", f"style-src {_sha256_source(STYLE)}", "img-src data:", "base-uri 'none'"]
    if static:
        parts.append("form-action 'none'")
    else:
        parts += [f"script-src {_sha256_source(SCRIPT)}", "form-action 'self'", "frame-ancestors 'none'"]
    return "; ".join(parts)


def scrub(text: Any) -> str:
    """``text`` with every URL cut to ``scheme://host/…`` (no user, path or query: where webhook
    and API secrets live)."""
    return _URL.sub(lambda m: m.group(1) + m.group(2) + ("/\u2026" if m.group(3) else ""), str(text))


def when(value: datetime | None) -> Markup:
    """A UTC time as ``<time>``, or a dash."""
    if value is None:
        return Markup('<span class="muted">\u2013</span>')
    value = value.astimezone(UTC)
    return Markup('<time datetime="{}">{}</time>').format(value.isoformat(), value.strftime("%Y-%m-%d %H:%M UTC"))


def days(not_after: datetime | None, now: datetime) -> str:
    """Days left as a number for a table cell (one decimal under 10 days), ``expired`` after."""
    if not_after is None:
        return "\u2013"
    left = (not_after - now).total_seconds() / 86400
    if left < 0:
        return "expired"
    return f"{left:.1f}" if left < 10 else f"{left:.0f}"


def days_text(not_after: datetime | None, now: datetime) -> str:
    """Days left in words: ``42 days left``, ``expired 3 days ago``."""
    if not_after is None:
        return "never issued"
    left = (not_after - now).total_seconds() / 86400
    if left < 0:
        return "expired today" if left > -1 else f"expired {-left:.0f} days ago"
    return f"{days(not_after, now)} days left"


def anchor(cert_id: str) -> str:
    """The in-page id of a certificate's section (static file)."""
    return "cert-" + quote(cert_id, safe="")


def symbol(state: str) -> str:
    return HEALTH_SYMBOLS.get(state, "?")


@cache
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("certkeeper.web", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(when=when, days=days, days_text=days_text, scrub=scrub, symbol=symbol, anchor=anchor,
                       favicon=FAVICON, style=Markup(STYLE))  # noqa: S704 - our own stylesheet, hashed in the CSP
    return env


def _render(template: str, *, static: bool, script: bool, **values: Any) -> str:
    values.setdefault("node", None)
    values.setdefault("daemon", None)
    values.setdefault("at", None)
    return _environment().get_template(template).render(
        static=static, csp=content_security_policy(static=static),
        script=Markup(SCRIPT) if script and not static else None,  # noqa: S704 - ours, hashed in the CSP
        **values,
    )


def _served_href(cert_id: str) -> str:
    return "/certificates/" + quote(cert_id, safe="")


def _static_href(cert_id: str) -> str:
    return "#" + anchor(cert_id)


def status_page(report: Mapping[str, Any], *, node: str | None = None, daemon: Mapping[str, Any] | None = None,
                static: bool = False, details: Sequence[Mapping[str, Any]] = ()) -> str:
    """The status page from :func:`certkeeper.reports.overview_report`.

    Args:
        node: this daemon's node name, shown in the header.
        daemon: the daemon's ``/healthz`` data (``issuer``, ``version``), shown in the header.
        static: one self-contained file (``status --html``): the policy in a ``<meta>``, no
            script, certificate links to sections of the same file, filled from ``details``
            (:func:`certkeeper.reports.describe_certificate` of each certificate).
    """
    certs = list(report["status"]["certificates"])
    counted: dict[str, int] = {}
    for cert in certs:
        counted[cert["health"]] = counted.get(cert["health"], 0) + 1
    counts = [(state, counted[state]) for state in (*HEALTH_ORDER, *sorted(set(counted) - set(HEALTH_ORDER)))
              if state in counted]
    return _render(
        "status.html", static=static, script=True, report=report, at=report["at"], node=node, daemon=daemon,
        attention=[cert for cert in certs if cert["health"] not in FINE],
        pending=[cert for cert in certs if cert.get("pending") or cert.get("awaiting_approval")],
        counts=counts, details=list(details),
        timeline=Markup(timeline_svg(certs, report["at"])),  # noqa: S704 - ElementTree escaped every value
        certificate_href=_static_href if static else _served_href,
    )


def certificate_page(detail: Mapping[str, Any], now: datetime, *, node: str | None = None,
                     daemon: Mapping[str, Any] | None = None) -> str:
    """One certificate's page from :func:`certkeeper.reports.describe_certificate`."""
    return _render("certificate.html", static=False, script=True, cert=detail, at=now, node=node, daemon=daemon,
                   certificate_href=_served_href)


def login_page(*, error: str | None = None, node: str | None = None) -> str:
    """What a request without the token gets: how to sign in (a form, the header, the link)."""
    return _render("login.html", static=False, script=False, error=error, node=node,
                   hours=int(SESSION_LIFETIME.total_seconds() // 3600), certificate_href=_served_href)


def message_page(title: str, message: str, *, back: bool = True, node: str | None = None) -> str:
    """A short page for not found, unavailable and the like."""
    return _render("message.html", static=False, script=False, title=title, message=message, back=back, node=node,
                   certificate_href=_served_href)


__all__ = ["certificate_page", "content_security_policy", "login_page", "message_page", "scrub", "status_page"]
