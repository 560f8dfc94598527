"""One pass over the certificates: decide, issue what is due, deploy, verify, alert.

The same decisions serve ``certkeeper renew`` (and ``--dry-run``) and the daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from certkeeper.errors import CertkeeperError, ConcurrencyError, NotFound
from certkeeper.lifecycle.checks import Reason, may_attempt, should_issue
from certkeeper.service.alerting import Alerting
from certkeeper.service.context import ServiceContext
from certkeeper.service.deployment import Deployment
from certkeeper.service.issuance import Issuance, IssueOutcome
from certkeeper.service.specs import Specs
from certkeeper.store import certificates
from certkeeper.store.facts import certificate_facts

log = logging.getLogger(__name__)


class Action(StrEnum):
    """What a pass does with a certificate."""

    ISSUE = "issue"
    WAIT = "wait"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class Decision:
    """What a certificate needs now, and why (``reason`` is a :class:`Reason`)."""

    certificate_id: str
    action: Action
    reason: Reason
    message: str
    renewal_time: datetime | None
    not_after: datetime | None


@dataclass
class ReconcileReport:
    decisions: list[Decision]
    issued: list[IssueOutcome] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    deployed: list[str] = field(default_factory=list)
    deploy_failed: dict[str, str] = field(default_factory=dict)
    alerts_queued: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.deploy_failed


class Reconciler:
    """Runs passes; one failing certificate never stops the others."""

    def __init__(
        self, context: ServiceContext, specs: Specs, issuance: Issuance, deployment: Deployment, alerting: Alerting
    ) -> None:
        self.context = context
        self.specs = specs
        self.issuance = issuance
        self.deployment = deployment
        self.alerting = alerting

    def decide(
        self, now: datetime, cert_ids: list[str] | None = None, *, force: bool = False, only_due: bool = False
    ) -> list[Decision]:
        """What each certificate needs now and why.

        ``only_due`` (the daemon's pass) first narrows to the candidates one SQL query finds, so a
        store of 100,000 certificates with nothing due is decided in a fraction of a second.
        """
        with self.context.store.session() as session:
            if only_due and not force:
                candidates = certificates.due_candidates(session, now)
                if cert_ids is not None:
                    wanted = set(cert_ids)
                    candidates = [cert_id for cert_id in candidates if cert_id in wanted]
                if not candidates:
                    return []
                cert_ids = candidates
            items = certificates.overview(session, cert_ids)
        decisions = []
        for item in items:
            facts = certificate_facts(item)
            verdict = should_issue(facts, now, force=force)
            if verdict is None:
                when = item.renewal_time
                message = f"renews after {when:%Y-%m-%d %H:%M} UTC" if when else "nothing to do"
                decisions.append(Decision(item.id, Action.WAIT, Reason.NOT_DUE, message, when, item.not_after))
                continue
            blocked = may_attempt(facts, now, force=force)
            if blocked is not None:
                decisions.append(Decision(item.id, Action.BLOCKED, Reason(blocked.reason), blocked.message,
                                          item.renewal_time, item.not_after))
            else:
                decisions.append(Decision(item.id, Action.ISSUE, Reason(verdict.reason), verdict.message,
                                          item.renewal_time, item.not_after))
        return decisions

    def run(
        self,
        now: datetime | None = None,
        *,
        cert_ids: list[str] | None = None,
        force: bool = False,
        dry_run: bool = False,
        parallel: int = 4,
        issue: bool = True,
        deploy: bool = True,
        only_due: bool = False,
        progress: Callable[[str], None] = lambda _step: None,
    ) -> ReconcileReport:
        """One pass over every certificate (or ``cert_ids``): decide, issue, deploy, verify, alert.

        ``issue=False`` is for nodes that do not hold the issuer lease (CAS arrays): they only
        deploy. ``dry_run`` decides and changes nothing. Due certificates are issued in parallel
        (bounded by ``parallel``).
        """
        now = now or self.context.clock.now()
        if not dry_run and issue:
            # in a CAS array only the issuer writes the config into the store: nodes whose config
            # differs for a while (an upgrade in progress) must not flip the spec back and forth,
            # each flip being a "spec changed" re-issuance
            self.specs.sync_config()
        if cert_ids:
            with self.context.store.session() as session:
                for cert_id in cert_ids:
                    if certificates.find(session, cert_id) is None:
                        raise NotFound(f"no certificate with id {cert_id!r} (certkeeper list shows them)")
        report = ReconcileReport(decisions=self.decide(now, cert_ids, force=force, only_due=only_due))
        if dry_run:
            return report
        due = [decision for decision in report.decisions if decision.action == Action.ISSUE] if issue else []
        if due:
            with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(due)))) as pool:
                for cert_id, outcome, error in pool.map(lambda d: self._issue(d, force, progress), due):
                    if outcome is not None:
                        report.issued.append(outcome)
                    elif error is not None:
                        report.failed[cert_id] = error
        if deploy:
            self._deploy(cert_ids, report)
        report.alerts_queued += self.alerting.queue_expiring(now)
        return report

    def _issue(
        self, decision: Decision, force: bool, progress: Callable[[str], None]
    ) -> tuple[str, IssueOutcome | None, str | None]:
        cert_id = decision.certificate_id

        def still_due() -> bool:
            return any(d.action == Action.ISSUE for d in self.decide(self.context.clock.now(), [cert_id], force=force))

        try:
            outcome = self.issuance.issue_certificate(
                cert_id, reason=decision.reason, progress=lambda step: progress(f"{cert_id}: {step}"),
                still_due=still_due,
            )
            return cert_id, outcome, None
        except ConcurrencyError:
            return cert_id, None, None  # another process is issuing it (logged once, at INFO)
        except CertkeeperError as exc:
            return cert_id, None, str(exc)
        except Exception as exc:
            log.exception("unexpected error while issuing %s", cert_id)
            return cert_id, None, f"unexpected error: {type(exc).__name__}: {exc}"

    def _deploy(self, cert_ids: list[str] | None, report: ReconcileReport) -> None:
        deployable = self.deployment.deployable()
        wanted = [cert_id for cert_id in cert_ids if cert_id in deployable] if cert_ids else deployable
        for cert_id in self.deployment.unsettled(wanted):  # what is already served is skipped at once
            try:
                results = self.deployment.deploy(cert_id)
            except Exception as exc:
                log.exception("deploying %s failed", cert_id)
                report.deploy_failed[cert_id] = str(exc)
                continue
            for result in results:
                if result.skipped:
                    continue
                if result.ok:
                    report.deployed.append(f"{cert_id}/{result.binding}")
                else:
                    report.deploy_failed[f"{cert_id}/{result.binding}"] = result.message
