"""The expiry and renewal timeline: one row per certificate, drawn as SVG by certkeeper.

A pure function of the status report's certificates and ``now`` (no chart library, nothing loaded
from anywhere). The SVG is built with :mod:`xml.etree.ElementTree`, which escapes every text and
attribute, so a hostile certificate id or name cannot break out of it. Colours are presentation
attributes, not ``style`` attributes (a strict Content-Security-Policy blocks those), and never
carry meaning alone: each row is labelled with its health's symbol and the renewal (diamond) and
expiry (bar end) marks differ in shape.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # building a document, never parsing one
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

#: a symbol per health, shown beside its name (status never by colour alone)
HEALTH_SYMBOLS: dict[str, str] = {
    "Ready": "\u2714",     # heavy check mark
    "Renewing": "\u21bb",  # clockwise open circle arrow
    "Expiring": "\u26a0",  # warning sign
    "Failing": "\u2716",   # heavy multiplication x
    "Expired": "\u2716",
    "Missing": "?",
}
#: dark enough for white text and visible on white (WCAG AA, 4.5:1 and up)
HEALTH_COLOURS: dict[str, str] = {
    "Ready": "#1b5e20",
    "Renewing": "#0d47a1",
    "Expiring": "#8a4b00",
    "Failing": "#b71c1c",
    "Expired": "#6d1b1b",
    "Missing": "#555555",
}

WIDTH = 960
LABEL_WIDTH = 230
RIGHT = 24
TOP = 34
ROW = 26
LEGEND = 66
LABEL_CHARS = 30
#: the chart shows at most this far back and ahead of now; marks beyond are drawn at the edge
PAST = timedelta(days=120)
FUTURE = timedelta(days=3 * 366)
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif"
TEXT = "#1a1a1a"
GRID = "#c8c8c8"
NOW_COLOUR = "#4a148c"

_STEPS: list[tuple[str, int]] = [
    ("hours", 1), ("hours", 3), ("hours", 6), ("hours", 12), ("days", 1), ("days", 2), ("days", 7),
    ("days", 14), ("months", 1), ("months", 2), ("months", 3), ("months", 6), ("months", 12), ("months", 24),
]


def fmt_date(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def chart_range(certificates: Sequence[Mapping[str, Any]], now: datetime) -> tuple[datetime, datetime]:
    """The time span drawn: now, every renewal time and expiry (within PAST/FUTURE of now),
    and each lifetime's start when it is close; at least two days, padded by 3 %."""
    points = [now]
    for cert in certificates:
        for key in ("renewal_time", "not_after"):
            if cert.get(key) is not None:
                points.append(cert[key])
    start, end = min(points), max(points)
    for cert in certificates:
        if cert.get("not_before") is not None:
            start = min(start, max(cert["not_before"], now - PAST / 4))
    start, end = max(start, now - PAST), min(end, now + FUTURE)
    if end - start < timedelta(days=2):
        middle = start + (end - start) / 2
        start, end = middle - timedelta(days=1), middle + timedelta(days=1)
    pad = (end - start) * 0.03
    return start - pad, end + pad


def _add_months(value: datetime, months: int) -> datetime:
    month = value.month - 1 + months
    return value.replace(year=value.year + month // 12, month=month % 12 + 1, day=1)


def ticks(start: datetime, end: datetime, most: int = 9) -> list[tuple[datetime, str]]:
    """Round grid times between ``start`` and ``end`` (at most ``most``), with their labels."""
    span = end - start
    unit, size = _STEPS[-1]
    for unit, size in _STEPS:
        approximate = timedelta(days=30.44 * size) if unit == "months" else timedelta(**{unit: size})
        if span / approximate <= most:
            break
    start = start.astimezone(UTC)
    if unit == "hours":
        first = start.replace(minute=0, second=0, microsecond=0)
        step = timedelta(hours=size)
        first += timedelta(hours=(-first.hour) % size)
        label = "%m-%d %H:%M"
    elif unit == "days":
        first = start.replace(hour=0, minute=0, second=0, microsecond=0)
        step = timedelta(days=size)
        label = "%Y-%m-%d"
    else:
        first = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        step = timedelta(0)
        label = "%Y-%m" if size < 12 else "%Y"
        if size >= 12:
            first = first.replace(month=1)
    out: list[tuple[datetime, str]] = []
    at = first
    while at <= end and len(out) < most * 3:
        if at >= start:
            out.append((at, at.strftime(label)))
        at = _add_months(at, size) if unit == "months" else at + step
    return out


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _row_summary(cert: Mapping[str, Any]) -> str:
    parts = [f"{cert['id']}: {cert['health']}"]
    if cert.get("renewal_time") is not None:
        parts.append(f"renews after {fmt_date(cert['renewal_time'])}")
    if cert.get("not_after") is not None:
        parts.append(f"expires {fmt_date(cert['not_after'])}")
    else:
        parts.append("no certificate issued yet")
    return "; ".join(parts)


def describe(certificates: Sequence[Mapping[str, Any]]) -> str:
    """The chart in words (its ``<desc>``, for screen readers)."""
    if not certificates:
        return "No certificates under management."
    return " ".join(_row_summary(cert) + "." for cert in certificates)


def timeline_svg(certificates: Sequence[Mapping[str, Any]], now: datetime, *, element_id: str = "timeline") -> str:
    """An SVG chart: per certificate its validity bar, renewal time (diamond) and expiry.

    Args:
        certificates: the status report's certificates (``id``, ``health``, ``not_before``,
            ``not_after``, ``renewal_time``), in the order to draw them.
        now: drawn as a vertical line.
        element_id: prefix of the ids of the chart's title and description.
    """
    start, end = chart_range(certificates, now)
    plot_left, plot_right = LABEL_WIDTH, WIDTH - RIGHT
    rows = max(1, len(certificates))
    height = TOP + rows * ROW + LEGEND

    def x(at: datetime) -> float:
        share = (at - start) / (end - start)
        return round(plot_left + min(1.0, max(0.0, share)) * (plot_right - plot_left), 1)

    svg = ET.Element("svg", {
        "xmlns": "http://www.w3.org/2000/svg", "viewBox": f"0 0 {WIDTH} {height}", "width": str(WIDTH),
        "height": str(height), "role": "img", "aria-labelledby": f"{element_id}-title {element_id}-desc",
        "font-family": FONT, "font-size": "12", "class": "timeline",
    })
    ET.SubElement(svg, "title", {"id": f"{element_id}-title"}).text = "Expiry and renewal timeline"
    ET.SubElement(svg, "desc", {"id": f"{element_id}-desc"}).text = describe(certificates)

    axis = ET.SubElement(svg, "g", {"class": "axis"})
    for at, label in ticks(start, end):
        position = x(at)
        ET.SubElement(axis, "line", {"x1": str(position), "x2": str(position), "y1": str(TOP - 6),
                                     "y2": str(TOP + rows * ROW), "stroke": GRID, "stroke-width": "1"})
        ET.SubElement(axis, "text", {"x": str(position), "y": str(TOP - 12), "text-anchor": "middle",
                                     "fill": TEXT}).text = label

    if not certificates:
        ET.SubElement(svg, "text", {"x": str(plot_left), "y": str(TOP + ROW * 0.65), "fill": TEXT}).text = \
            "No certificates under management."
    now_x = x(now)
    for index, cert in enumerate(certificates):
        _draw_row(svg, cert, TOP + index * ROW, x, now_x)

    marker = ET.SubElement(svg, "g", {"class": "now"})
    ET.SubElement(marker, "line", {"x1": str(now_x), "x2": str(now_x), "y1": str(TOP - 4),
                                   "y2": str(TOP + rows * ROW), "stroke": NOW_COLOUR, "stroke-width": "2",
                                   "stroke-dasharray": "4 3"})
    ET.SubElement(marker, "text", {"x": str(now_x + 4), "y": str(TOP + rows * ROW + 14), "fill": NOW_COLOUR,
                                   "font-weight": "bold"}).text = "now"
    _legend(svg, height - 30)
    return ET.tostring(svg, encoding="unicode")


def _draw_row(svg: ET.Element, cert: Mapping[str, Any], top: int, x: Any, now_x: float) -> None:
    health = str(cert.get("health", "Missing"))
    colour = HEALTH_COLOURS.get(health, HEALTH_COLOURS["Missing"])
    group = ET.SubElement(svg, "g", {"class": "mark", "data-certificate": str(cert["id"]),
                                     "data-health": health})
    ET.SubElement(group, "title").text = _row_summary(cert)
    middle = top + ROW / 2
    ET.SubElement(group, "text", {"x": "8", "y": str(middle + 4), "fill": TEXT}).text = \
        f"{HEALTH_SYMBOLS.get(health, '?')} {_short(str(cert['id']))}"
    not_after = cert.get("not_after")
    if not_after is None:
        # nothing to draw yet: say so beside the now line, where its first certificate will start
        waiting = cert.get("awaiting_approval")
        ET.SubElement(group, "text", {"x": str(min(now_x + 8, WIDTH - RIGHT - 320)), "y": str(middle + 4),
                                      "fill": TEXT, "font-style": "italic"}).text = \
            f"{health}: no certificate yet" + (f", request {waiting} awaits approval" if waiting else "")
        return
    begin = x(cert["not_before"]) if cert.get("not_before") is not None else LABEL_WIDTH
    finish = x(not_after)
    ET.SubElement(group, "rect", {"x": str(begin), "y": str(middle - 5), "width": str(max(1.0, finish - begin)),
                                  "height": "10", "rx": "2", "fill": colour, "fill-opacity": "0.35",
                                  "stroke": colour, "stroke-width": "1", "class": "validity"})
    ET.SubElement(group, "rect", {"x": str(finish - 2), "y": str(middle - 9), "width": "4", "height": "18",
                                  "fill": colour, "class": "expiry"})
    renewal = cert.get("renewal_time")
    if renewal is not None:
        rx = x(renewal)
        ET.SubElement(group, "path", {"d": f"M{rx} {middle - 7} L{rx + 7} {middle} L{rx} {middle + 7} "
                                           f"L{rx - 7} {middle} Z",
                                      "fill": "#ffffff", "stroke": TEXT, "stroke-width": "2", "class": "renewal"})


def _legend(svg: ET.Element, baseline: float) -> None:
    legend = ET.SubElement(svg, "g", {"class": "legend"})
    left = LABEL_WIDTH + 60
    ET.SubElement(legend, "rect", {"x": str(left), "y": str(baseline - 9), "width": "28", "height": "10",
                                   "fill": HEALTH_COLOURS["Ready"], "fill-opacity": "0.35",
                                   "stroke": HEALTH_COLOURS["Ready"]})
    ET.SubElement(legend, "text", {"x": str(left + 34), "y": str(baseline), "fill": TEXT}).text = "valid"
    left += 90
    ET.SubElement(legend, "rect", {"x": str(left), "y": str(baseline - 12), "width": "4", "height": "16",
                                   "fill": HEALTH_COLOURS["Ready"]})
    ET.SubElement(legend, "text", {"x": str(left + 10), "y": str(baseline), "fill": TEXT}).text = "expiry"
    left += 80
    ET.SubElement(legend, "path", {"d": f"M{left} {baseline - 11} L{left + 7} {baseline - 4} L{left} {baseline + 3} "
                                        f"L{left - 7} {baseline - 4} Z",
                                   "fill": "#ffffff", "stroke": TEXT, "stroke-width": "2"})
    ET.SubElement(legend, "text", {"x": str(left + 12), "y": str(baseline), "fill": TEXT}).text = "renewal time"
    ET.SubElement(legend, "text", {"x": str(LABEL_WIDTH + 60), "y": str(baseline + 20), "fill": TEXT}).text = \
        "\u2714 Ready   \u21bb Renewing   \u26a0 Expiring   \u2716 Failing or Expired   ? Missing"
