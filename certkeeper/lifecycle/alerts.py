"""When to send "expiring" alerts: thresholds on a certificate's validity, as pure functions.

By default an alert is due when 1/3, 1/6 and 1/15 of the lifetime remains, and when 7, 3 and 1
days remain (issue 4). A threshold at fraction ``f`` falls at ``not_after - f * lifetime``; a
threshold of ``d`` days falls at ``not_after - d days`` and exists only when the lifetime is longer
than ``d`` days (a 6-day certificate gets no "7 days left" alert, and its "3 days" and "1 day"
alerts come on top of the fractions).

Each :class:`Threshold` has a stable ``label`` (``frac-1/3``, ``days-7``) that the outbox uses as
the dedupe key: one alert per event per certificate revision per threshold. A daemon that starts
late sends one alert for :func:`latest_crossed`, not one per missed threshold. The caller applies
these only to the certificate's *current* revision and evaluates them after the reconcile pass
(so a certificate renewed in that pass raises no alert).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from certkeeper.lifecycle._time import require_aware, whole_seconds
from certkeeper.model import EventKind

#: What an operator should do after each kind of alert: the one table every channel uses.
NEXT_STEPS: dict[EventKind, str] = {
    EventKind.ISSUED: "Nothing: certkeeper deploys and renews it.",
    EventKind.RENEWED: "Nothing: certkeeper deploys the new certificate and checks it is served.",
    EventKind.RENEWAL_FAILED: "Read the CA's problem below; certkeeper retries with backoff. "
    "Run 'certkeeper status' to see the next attempt.",
    EventKind.REJECTED: "The CA refused in a way retrying cannot fix: correct the names or the CA "
    "settings, then run 'certkeeper renew ID --force'.",
    EventKind.PENDING_APPROVAL: "Approve the pending request at the CA; certkeeper collects the certificate "
    "by itself ('certkeeper renew ID --force' asks at once).",
    EventKind.DEPLOYED: "Nothing.",
    EventKind.DEPLOY_FAILED: "The previous certificate is still served; check the binding target and "
    "'certkeeper status'. certkeeper retries.",
    EventKind.VERIFY_MISMATCH: "The endpoint serves another certificate: check the gateway binding, then "
    "run 'certkeeper deploy ID'.",
    EventKind.EXPIRING: "Run 'certkeeper status' to see why it has not been renewed, then "
    "'certkeeper renew ID'.",
    EventKind.RECOVERED: "Nothing: the earlier problem is resolved.",
    EventKind.DIGEST: "Nothing, unless a line says Failing, Expiring or Expired.",
    EventKind.TEST: "Nothing: this is a test message from 'certkeeper notify test'.",
}


def next_step(kind: EventKind) -> str:
    """What to do after an alert of this kind, in one or two sentences."""
    return NEXT_STEPS.get(kind, "")


DEFAULT_FRACTIONS: tuple[float | Fraction, ...] = (Fraction(1, 3), Fraction(1, 6), Fraction(1, 15))
DEFAULT_DAYS: tuple[float, ...] = (7, 3, 1)


@dataclass(frozen=True)
class Threshold:
    """An instant at which an "expiring" alert is due; ``label`` is stable across runs."""

    label: str
    at: datetime


def fraction_label(fraction: float | Fraction) -> str:
    """``frac-1/3`` for a third (floats are read as the nearest fraction with a small denominator)."""
    value = Fraction(fraction).limit_denominator(1000)
    return f"frac-{value.numerator}/{value.denominator}"


def days_label(days: float) -> str:
    """``days-7`` for seven days, ``days-0.5`` for half a day."""
    return f"days-{days:g}"


def expiry_thresholds(
    not_before: datetime,
    not_after: datetime,
    *,
    fractions: Sequence[float | Fraction] = DEFAULT_FRACTIONS,
    days: Sequence[float] = DEFAULT_DAYS,
) -> list[Threshold]:
    """Every alert threshold of a certificate valid ``not_before``..``not_after``, sorted by time.

    Times are truncated to whole seconds; ties are ordered by label. A certificate whose lifetime is
    not positive has no thresholds.

    Raises:
        ValueError: a naive datetime, a fraction outside (0, 1), or a non-positive number of days.
    """
    require_aware(not_before=not_before, not_after=not_after)
    lifetime = not_after - not_before
    if lifetime <= timedelta(0):
        return []
    thresholds: dict[str, Threshold] = {}
    for fraction in fractions:
        if not 0 < fraction < 1:
            raise ValueError(f"an expiry fraction must be between 0 and 1, got {fraction}")
        label = fraction_label(fraction)
        exact = Fraction(fraction).limit_denominator(1000)
        span = timedelta(microseconds=round(lifetime // timedelta(microseconds=1) * exact))
        thresholds[label] = Threshold(label, whole_seconds(not_after - span))
    for count in days:
        if count <= 0:
            raise ValueError(f"an expiry threshold in days must be positive, got {count}")
        span = timedelta(days=count)
        if lifetime > span:
            label = days_label(count)
            thresholds[label] = Threshold(label, whole_seconds(not_after - span))
    return sorted(thresholds.values(), key=lambda threshold: (threshold.at, threshold.label))


def crossed_thresholds(
    not_before: datetime,
    not_after: datetime,
    now: datetime,
    *,
    fractions: Sequence[float | Fraction] = DEFAULT_FRACTIONS,
    days: Sequence[float] = DEFAULT_DAYS,
    renewal_time: datetime | None = None,
) -> list[Threshold]:
    """The thresholds whose time is at or before ``now``, oldest first.

    With ``renewal_time`` (the revision's stored renewal time), thresholds that fall strictly before
    it are left out: they are crossed on schedule, before renewal was even due (a short
    ``renew_before``, or an ARI window later than the 1/3 mark), and are no reason to alarm anyone.
    Thresholds after ``not_after`` are kept: whether to alert on an expired certificate is the
    caller's choice.
    """
    require_aware(now=now, renewal_time=renewal_time)
    return [
        threshold
        for threshold in expiry_thresholds(not_before, not_after, fractions=fractions, days=days)
        if threshold.at <= now and (renewal_time is None or threshold.at >= renewal_time)
    ]


def latest_crossed(
    not_before: datetime,
    not_after: datetime,
    now: datetime,
    *,
    fractions: Sequence[float | Fraction] = DEFAULT_FRACTIONS,
    days: Sequence[float] = DEFAULT_DAYS,
    renewal_time: datetime | None = None,
) -> Threshold | None:
    """The most recent crossed threshold (see :func:`crossed_thresholds`), or None.

    A daemon that was down while several thresholds passed alerts once, for this one.
    """
    crossed = crossed_thresholds(
        not_before, not_after, now, fractions=fractions, days=days, renewal_time=renewal_time
    )
    return crossed[-1] if crossed else None
