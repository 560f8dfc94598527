"""The persistent alert queue: every alert is a row, so none is lost on a restart.

The service enqueues an event once per notifier with a dedupe key ("expiring:mail:rev3:7d"); a
second enqueue with the same (notifier, key) is skipped, which gives one alert per event per
certificate per threshold. The daemon calls :meth:`Outbox.deliver_due` every minute or so:

- rows whose ``next_attempt_at`` has come are sent one at a time, claimed first with a conditional
  update so two daemons sharing a store do not both send one;
- success sets ``delivered_at``;
- a retryable failure (``NotifyError(retryable=True)``, and *any* unexpected exception from a
  notifier: a bug in one sender must never crash the daemon) counts an attempt and waits
  ``max(backoff(attempts), Retry-After)``; backoff is 30 s doubling to 1 h;
- a permanent failure, or :data:`MAX_ATTEMPTS` attempts, or an alert older than :data:`MAX_AGE`,
  marks the row dead with its last error (``certkeeper status`` lists it);
- after a retryable failure the rest of that notifier's rows wait for the next run (the endpoint
  is down; no point hammering it), and notifiers with ``min_interval`` (Slack: 1 s, its documented
  rate) are paced.

Delivery is at-least-once: a crash between a successful send and the commit that records it sends
that one alert again after :data:`CLAIM_SECONDS`.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from certkeeper.errors import NotifyError, StoreConflict
from certkeeper.model import Event
from certkeeper.notifiers import Notifier, SupportsPacing
from certkeeper.notifiers.render import from_json, to_json
from certkeeper.store import alerts
from certkeeper.store.unit import Store

log = logging.getLogger(__name__)

BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
#: give up after this many failed attempts ...
MAX_ATTEMPTS = 60
#: ... or when the alert is this old, whichever comes first
MAX_AGE = timedelta(hours=48)
#: a claimed row is not due again for this long (a crash mid-send retries after it)
CLAIM_SECONDS = 300
#: rows sent per deliver_due call, so one run stays short; the rest wait for the next run
BATCH = 100
#: longest last_error kept
ERROR_MAX = 500


def backoff(attempts: int) -> timedelta:
    """Wait after ``attempts`` failed attempts: 30 s, 1 min, 2 min, ... capped at 1 h."""
    if attempts <= 0:
        return timedelta(0)
    step: timedelta = BACKOFF_FIRST * (2 ** min(attempts - 1, 16))
    return step if step < BACKOFF_CAP else BACKOFF_CAP


@dataclass
class DeliveryReport:
    """What one :meth:`Outbox.deliver_due` run did (row ids per outcome)."""

    delivered: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    #: due, but their notifier is not configured (they wait, then die of old age)
    unknown_notifier: list[int] = field(default_factory=list)
    #: due, but left for the next run (batch full, or their endpoint just failed)
    deferred: list[int] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return len(self.delivered) + len(self.retrying) + len(self.dead)


@dataclass(frozen=True)
class PendingAlert:
    """An undelivered alert, for ``certkeeper status``."""

    id: int
    notifier: str
    kind: str
    certificate_id: str | None
    dedupe_key: str
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    dead: bool
    last_error: str | None


class Outbox:
    """The alert queue over the store. ``sleep``/``monotonic`` are the pacing clock (tests may
    pass their own); everything that is stored uses ``now`` from the store's clock or the caller."""

    def __init__(
        self,
        store: Store,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        max_attempts: int = MAX_ATTEMPTS,
        max_age: timedelta = MAX_AGE,
    ) -> None:
        self.store = store
        self.clock = store.clock
        self.sleep = sleep
        self.monotonic = monotonic
        self.max_attempts = max_attempts
        self.max_age = max_age
        self._last_sent: dict[str, float] = {}

    # --- enqueue ---------------------------------------------------------------------------------

    def enqueue(self, event: Event, notifiers: Sequence[str], dedupe_key: str) -> int:
        """Queue ``event`` for each notifier; returns how many rows were added.

        A (notifier, dedupe_key) already queued - delivered, pending or dead - is skipped, so the
        caller may enqueue on every reconcile pass without sending twice.
        """
        if len(dedupe_key) > 255:
            raise ValueError("dedupe_key is longer than 255 characters")
        now = self.clock.now()
        payload = to_json(event)
        added = 0
        for notifier in dict.fromkeys(notifiers):  # keep order, drop repeats
            try:
                with self.store.session() as session:
                    if alerts.exists(session, notifier, dedupe_key):
                        continue
                    alerts.add(
                        session, notifier=notifier, dedupe_key=dedupe_key, kind=event.kind.value,
                        certificate_id=event.certificate_id, payload=payload, now=now,
                    )
            except StoreConflict:
                continue  # another process queued the same alert between our check and insert
            added += 1
        if added:
            log.info("queued %s alert for %d notifier(s)", event.kind.value, added,
                     extra={"cert": event.certificate_id})
        return added

    # --- delivery --------------------------------------------------------------------------------

    def deliver_due(self, notifiers: Mapping[str, Notifier], now: datetime | None = None) -> DeliveryReport:
        """Send every alert that is due at ``now``; never raises because of a notifier."""
        now = now or self.clock.now()
        report = DeliveryReport()
        known = list(notifiers)
        with self.store.session() as session:
            due = alerts.due(session, now, known, BATCH * 4)
            orphans = alerts.orphans(session, now, known)
        # Alerts for a notifier that is no longer configured wait (the config may come back),
        # then die of old age like any other.
        for row_id, notifier_name, created_at in orphans:
            if now - created_at >= self.max_age:
                self._mark_dead(row_id, now, f"notifier {notifier_name!r} is not configured")
                report.dead.append(row_id)
            else:
                report.unknown_notifier.append(row_id)
        paused: set[str] = set()
        for row_id, notifier_name, next_attempt_at in due:
            notifier = notifiers[notifier_name]
            if notifier_name in paused or report.attempted >= BATCH:
                report.deferred.append(row_id)
                continue
            if not self._claim(row_id, next_attempt_at, now):
                continue  # another process took it
            outcome = self._deliver_one(row_id, notifier, now)
            getattr(report, outcome).append(row_id)
            if outcome != "delivered":
                paused.add(notifier_name)
        if report.attempted:
            log.info(
                "alerts: %d delivered, %d to retry, %d dead, %d deferred",
                len(report.delivered), len(report.retrying), len(report.dead), len(report.deferred),
            )
        if report.unknown_notifier:
            log.debug("%d alert(s) wait for notifiers that are not configured", len(report.unknown_notifier))
        return report

    def _claim(self, row_id: int, next_attempt_at: datetime, now: datetime) -> bool:
        with self.store.session() as session:
            return alerts.claim(session, row_id, next_attempt_at, now + timedelta(seconds=CLAIM_SECONDS))

    def _pace(self, notifier: Notifier) -> None:
        interval = notifier.min_interval if isinstance(notifier, SupportsPacing) else 0.0
        if interval <= 0:
            return
        last = self._last_sent.get(notifier.name)
        if last is not None:
            wait = interval - (self.monotonic() - last)
            if wait > 0:
                self.sleep(wait)

    def _deliver_one(self, row_id: int, notifier: Notifier, now: datetime) -> str:
        # No transaction stays open while the notifier talks to the network.
        with self.store.session() as session:
            row = alerts.get(session, row_id)
            if row is None:
                return "deferred"
            payload = row.payload
        try:
            event = from_json(payload)
        except (KeyError, TypeError, ValueError) as exc:
            return self._record_failure(row_id, now, f"unreadable alert payload ({type(exc).__name__})",
                                        permanent=True)
        self._pace(notifier)
        try:
            notifier.notify(event)
        except NotifyError as exc:
            return self._record_failure(row_id, now, str(exc), permanent=not exc.retryable,
                                        retry_after=exc.retry_after)
        except Exception as exc:  # noqa: BLE001 - a notifier bug must not stop the daemon
            # The text of a bug's exception could hold anything (a URL): keep its type, and log
            # only where it happened, not its message.
            log.error("notifier %r raised %s (a bug); the alert will be retried", notifier.name,
                      type(exc).__name__, extra={"notifier": notifier.name})
            log.debug("where notifier %r failed:\n%s", notifier.name,
                      "".join(traceback.format_tb(exc.__traceback__)))
            return self._record_failure(row_id, now, f"unexpected {type(exc).__name__} in the notifier",
                                        permanent=False)
        finally:
            self._last_sent[notifier.name] = self.monotonic()
        with self.store.session() as session:
            row = alerts.get(session, row_id)
            if row is None:
                return "delivered"
            alerts.set_fields(session, row_id, delivered_at=now, attempts=row.attempts + 1, last_error=None)
            log.info("delivered %s alert via %s", row.kind, notifier.name,
                     extra={"cert": row.certificate_id, "notifier": notifier.name})
        return "delivered"

    def _record_failure(
        self,
        row_id: int,
        now: datetime,
        error: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
    ) -> str:
        with self.store.session() as session:
            row = alerts.get(session, row_id)
            if row is None:
                return "dead"
            attempts, last_error = row.attempts + 1, error[:ERROR_MAX]
            too_many = attempts >= self.max_attempts
            too_old = now - row.created_at >= self.max_age
            if permanent or too_many or too_old:
                alerts.set_fields(session, row_id, attempts=attempts, last_error=last_error, dead=True,
                                  next_attempt_at=now)
                why = "a permanent error" if permanent else ("too many attempts" if too_many else "too old")
                log.error("giving up on %s alert via %s (%s): %s", row.kind, row.notifier, why,
                          last_error, extra={"cert": row.certificate_id, "notifier": row.notifier})
                return "dead"
            wait = backoff(attempts)
            if retry_after is not None and retry_after > 0:
                wait = max(wait, timedelta(seconds=retry_after))
            next_attempt_at = now + wait
            alerts.set_fields(session, row_id, attempts=attempts, last_error=last_error,
                              next_attempt_at=next_attempt_at)
            log.warning("%s alert via %s failed (attempt %d), retrying at %s: %s", row.kind, row.notifier,
                        attempts, next_attempt_at.isoformat(), last_error,
                        extra={"cert": row.certificate_id, "notifier": row.notifier})
            return "retrying"

    def _mark_dead(self, row_id: int, now: datetime, error: str) -> None:
        with self.store.session() as session:
            row = alerts.get(session, row_id)
            if row is not None and row.delivered_at is None:
                alerts.set_fields(session, row_id, dead=True, last_error=error)
                log.error("giving up on %s alert: %s", row.kind, error, extra={"cert": row.certificate_id})

    # --- reading ---------------------------------------------------------------------------------

    def pending(self, *, include_dead: bool = True, certificate_id: str | None = None) -> list[PendingAlert]:
        """Undelivered alerts (waiting or retrying, and dead ones unless ``include_dead`` is False)."""
        with self.store.session() as session:
            rows = alerts.undelivered(session, include_dead=include_dead, certificate_id=certificate_id)
            return [
                PendingAlert(
                    id=row.id, notifier=row.notifier, kind=row.kind, certificate_id=row.certificate_id,
                    dedupe_key=row.dedupe_key, created_at=row.created_at, attempts=row.attempts,
                    next_attempt_at=row.next_attempt_at, dead=row.dead, last_error=row.last_error,
                )
                for row in rows
            ]

    def counts(self) -> dict[str, int]:
        """{"pending": n, "dead": n, "delivered": n} for status and metrics."""
        with self.store.session() as session:
            return alerts.counts(session)

    def purge_delivered(self, older_than: datetime) -> int:
        """Delete delivered rows created before ``older_than``; their dedupe keys are forgotten,
        so use a horizon longer than any certificate's lifetime (e.g. 400 days)."""
        with self.store.session() as session:
            return alerts.purge_delivered(session, older_than)
