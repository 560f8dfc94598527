"""Alerts: turn lifecycle events into outbox rows (once per dedupe key), and deliver them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from certkeeper.lifecycle.alerts import latest_crossed, next_step
from certkeeper.lifecycle.health import health
from certkeeper.model import Event, EventKind
from certkeeper.outbox import DeliveryReport, Outbox
from certkeeper.service.context import ServiceContext
from certkeeper.store import certificates
from certkeeper.store.facts import certificate_facts

log = logging.getLogger(__name__)


class Alerting:
    """Queues alerts for every alert notifier and delivers what is due."""

    def __init__(self, context: ServiceContext) -> None:
        self.context = context

    def outbox(self) -> Outbox:
        return Outbox(self.context.store)

    def queue(self, event: Event, dedupe: str) -> int:
        """Queue ``event`` for every alert notifier, once per ``dedupe`` key; never raises."""
        names = self.context.notifier_names()
        if not names:
            return 0
        try:
            return self.outbox().enqueue(event, names, dedupe)
        except Exception:
            log.exception("could not queue the %s alert for %s", event.kind.value, event.certificate_id)
            return 0

    def event(
        self, kind: EventKind, cert_id: str, message: str, *, dedupe: str, details: Mapping[str, str] | None = None
    ) -> int:
        """Queue an alert about one certificate, with its names and days left; never raises."""
        if not self.context.notifier_names():
            return 0
        now = self.context.clock.now()
        names: tuple[str, ...] = ()
        not_after = None
        try:
            with self.context.store.session() as session:
                items = certificates.overview(session, [cert_id])
        except Exception:
            log.exception("could not read %s for its %s alert", cert_id, kind.value)
            items = []
        if items:
            names, not_after = items[0].names, items[0].not_after
        event = Event(
            kind=kind, occurred_at=now, message=message, certificate_id=cert_id, names=names, not_after=not_after,
            days_left=round((not_after - now).total_seconds() / 86400, 1) if not_after else None,
            action=next_step(kind), details=dict(details or {}),
        )
        return self.queue(event, dedupe)

    def queue_expiring(self, now: datetime) -> int:
        """An EXPIRING alert per crossed threshold, only while a due renewal has not succeeded."""
        settings = self.context.config.settings.alerts
        if not self.context.notifier_names():
            return 0
        with self.context.store.session() as session:
            # only certificates past their renewal time can raise an expiring alert
            candidates = certificates.due_candidates(session, now)
            items = certificates.overview(session, candidates) if candidates else []
        queued = 0
        for item in items:
            if item.not_before is None or item.not_after is None or item.revision is None:
                continue
            if item.renewal_time is not None and now < item.renewal_time:
                continue
            threshold = latest_crossed(
                item.not_before, item.not_after, now, fractions=settings.expiring_fractions, days=settings.expiring_days
            )
            if threshold is None:
                continue
            left = (item.not_after - now).total_seconds() / 86400
            message = (
                f"expires {item.not_after:%Y-%m-%d %H:%M} UTC ({left:.1f} days left) and has not been renewed"
                + (f": {item.last_failure_message}" if item.last_failure_message else "")
            )
            queued += self.event(
                EventKind.EXPIRING, item.id, message, dedupe=f"expiring:{item.id}:{item.revision}:{threshold.label}",
                details={"threshold": threshold.label},
            )
        return queued

    def queue_digest(self, now: datetime) -> int:
        """The daily digest: every certificate's health in one message."""
        with self.context.store.session() as session:
            items = certificates.overview(session)
        lines = []
        for item in items:
            state, reason = health(certificate_facts(item), now)
            left = f"{(item.not_after - now).total_seconds() / 86400:.0f}d" if item.not_after else "-"
            lines.append(f"{item.id}: {state.value} ({left} left) - {reason}")
        event = Event(
            kind=EventKind.DIGEST, occurred_at=now, message="\n".join(lines) or "no certificates under management",
            action=next_step(EventKind.DIGEST), details={"certificates": str(len(lines))},
        )
        return self.queue(event, f"digest:{now:%Y-%m-%d}")

    def deliver(self, now: datetime | None = None) -> DeliveryReport:
        """Send what is due through the configured notifiers."""
        return self.outbox().deliver_due(self.context.notifiers(), now or self.context.clock.now())

    def purge_delivered(self, older_than: datetime) -> int:
        """Forget delivered alerts created before ``older_than`` (their dedupe keys go with them)."""
        return self.outbox().purge_delivered(older_than)
