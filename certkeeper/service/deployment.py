"""Deploying: put the current revision on this node's bindings, prove it, roll back a bad change.

Binder contract (:class:`certkeeper.binders.Binder`): a ``deploy`` that raises has put the
previous state back itself (the files binder restores files and reloads; Exchange re-enables the
old thumbprint). A deploy that succeeded but whose result does not verify is rolled back here by
deploying the previous revision again. In a CAS array the rollout gate
(:func:`certkeeper.lifecycle.rollout.rollout_gate`) decides when this node's turn has come.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from certkeeper.binders import Binder, PlannedStep, SupportsDryRun
from certkeeper.cluster import node_alive
from certkeeper.errors import CertkeeperError
from certkeeper.lifecycle.backoff import next_attempt_after_failure
from certkeeper.lifecycle.rollout import ALL_NODES, nodes_before, rollout_gate, rollout_order
from certkeeper.model import SERVED_STATES, Bundle, DeploymentState, EventKind, Verification
from certkeeper.service.alerting import Alerting
from certkeeper.service.context import ServiceContext
from certkeeper.service.inventory import Inventory
from certkeeper.service.specs import SOURCE_UNCONFIGURED, binding_key
from certkeeper.store import certificates, deployments, events, leases, revisions

if TYPE_CHECKING:
    from sqlalchemy import Connection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeployResult:
    """What happened on one binding: deployed and proven, failed (and rolled back), or skipped."""

    binding: str
    ok: bool
    message: str
    skipped: bool = False
    served_fingerprint: str | None = None


@dataclass(frozen=True)
class Target:
    """One binding of a certificate that this node deploys."""

    key: str
    options: Mapping[str, Any]


class Deployment:
    """Deploys, verifies and rolls back this node's bindings."""

    def __init__(self, context: ServiceContext, inventory: Inventory, alerting: Alerting) -> None:
        self.context = context
        self.inventory = inventory
        self.alerting = alerting

    def targets(self, bindings: list[dict[str, Any]]) -> list[Target]:
        """The bindings this node deploys: those for every node, and those naming this node."""
        mine = []
        for index, binding in enumerate(bindings):
            node = binding.get("node") or ALL_NODES
            if node == ALL_NODES or node == self.context.node:
                mine.append(Target(binding_key(binding, index), binding))
        return mine

    def binder(self, cert_id: str, target: Target) -> Binder:
        return self.context.binder(cert_id, target.key, target.options)

    def deployable(self) -> list[str]:
        """Certificates with bindings that are still configured (not ``unconfigured``)."""
        with self.context.store.session() as session:
            with_bindings = set(certificates.ids_with_bindings(session))
            return [cert_id for cert_id, source in certificates.sources(session)
                    if cert_id in with_bindings and source != SOURCE_UNCONFIGURED]

    def unsettled(self, cert_ids: list[str]) -> list[str]:
        """Of ``cert_ids``, those with something to deploy on this node: a binding here that does
        not serve the current revision yet. Two queries for all of them, so a pass over a store
        where everything is in place costs no query per certificate; :meth:`deploy` decides the
        rest (backoff, the rollout gate) for the others."""
        with self.context.store.session() as session:
            serving = deployments.serving_current(session, self.context.node)
            bindings = certificates.bindings_of(session)
        unsettled = []
        for cert_id in cert_ids:
            keys = {target.key for target in self.targets(bindings.get(cert_id, []))}
            if not keys <= serving.get(cert_id, set()):
                unsettled.append(cert_id)
        return unsettled

    def deploy(self, cert_id: str, *, force: bool = False) -> list[DeployResult]:
        """Deploy the current revision to this node's bindings, verify, roll back on failure."""
        with self.context.store.session() as session:
            cert = certificates.get(session, cert_id)
            bindings = list(cert.bindings or [])
            current = revisions.current(session, cert_id)
            if current is None:
                return []
            revision_id = current.id
        return [self._deploy_one(cert_id, revision_id, target, force=force) for target in self.targets(bindings)]

    def plan(self, cert_id: str) -> tuple[list[PlannedStep], list[str]]:
        """What :meth:`deploy` would run for the current revision, running nothing: the steps of
        each binding that can say (:class:`SupportsDryRun`), and the keys of those that cannot."""
        bundle = self.inventory.bundle(cert_id)
        with self.context.store.session() as session:
            bindings = list(certificates.get(session, cert_id).bindings or [])
            current = revisions.current(session, cert_id)
            planned = []
            for target in self.targets(bindings):
                previous_id = (
                    deployments.last_served_revision(session, cert_id, target.key, self.context.node,
                                                     other_than=current.id)
                    if current is not None else None
                )
                number = revisions.get(session, previous_id).number if previous_id is not None else None
                planned.append((target, number))
        steps: list[PlannedStep] = []
        unsupported: list[str] = []
        for target, number in planned:
            binder = self.binder(cert_id, target)
            if isinstance(binder, SupportsDryRun):
                previous = self.inventory.bundle(cert_id, number) if number is not None else None
                steps.extend(binder.plan(bundle, previous))
            else:
                unsupported.append(target.key)
        return steps, unsupported

    def binders_of_type(self, kind: str) -> list[tuple[str, Binder]]:
        """(certificate id, binder) for every binding of ``kind`` this node deploys (``doctor``)."""
        found = []
        for cert_id in self.deployable():
            with self.context.store.session() as session:
                bindings = list(certificates.get(session, cert_id).bindings or [])
            for target in self.targets(bindings):
                if target.options.get("type") == kind:
                    found.append((cert_id, self.binder(cert_id, target)))
        return found

    def _gate(self, session: Connection, cert_id: str, revision_id: int, now: datetime) -> str | None:
        """The rollout gate's facts, gathered for this node (see :mod:`certkeeper.lifecycle.rollout`)."""
        settings = self.context.config.settings.daemon
        order = rollout_order(settings.canary, settings.rollout_order)
        node = self.context.node
        if not order or not node:
            return None
        bindings = certificates.get(session, cert_id).bindings or []
        binding_nodes = {str(binding.get("node") or ALL_NODES) for binding in bindings}
        before = nodes_before(node, order, binding_nodes)
        ttl = timedelta(seconds=settings.lease_ttl_seconds)
        heartbeats = leases.heartbeats(session, before)
        states = deployments.states_by_node(session, cert_id, revision_id, before)
        return rollout_gate(
            node, order, binding_nodes=binding_nodes, states=states,
            alive=lambda other: node_alive(heartbeats.get(other), now, ttl),
        )

    def _deploy_one(self, cert_id: str, revision_id: int, target: Target, *, force: bool) -> DeployResult:
        store, node, key = self.context.store, self.context.node, target.key
        now = self.context.clock.now()
        with store.session() as session:
            row = deployments.find(session, revision_id, key, node)
            if row is not None and not force:
                if row.state in SERVED_STATES:
                    return DeployResult(key, True, "already deployed", skipped=True,
                                        served_fingerprint=row.served_fingerprint)
                if row.state == DeploymentState.FAILED and row.next_attempt_at and now < row.next_attempt_at:
                    return DeployResult(key, False, f"backing off until {row.next_attempt_at:%H:%M} UTC", skipped=True)
            waiting = self._gate(session, cert_id, revision_id, now)
            if waiting is not None:
                return DeployResult(key, False, waiting, skipped=True)
            previous_id = deployments.last_served_revision(session, cert_id, key, node, other_than=revision_id)
            previous_number = revisions.get(session, previous_id).number if previous_id is not None else None
            attempts = deployments.start(session, cert_id, revision_id, key, node, now).attempts
        bundle = self.inventory.bundle(cert_id)
        previous = self.inventory.bundle(cert_id, previous_number) if previous_number is not None else None
        log.info("%s: deploying revision %s to %s", cert_id, bundle.revision, key, extra={"cert": cert_id})
        binder = self.binder(cert_id, target)
        verification: Verification | None = None
        error: str | None = None
        restored_by_binder = False
        try:
            binder.deploy(bundle, previous)
        except CertkeeperError as exc:  # BindError, VerifyError, a secret that cannot be resolved...
            error, restored_by_binder = str(exc), True
        if error is None:
            try:
                verification = binder.verify(bundle)
                if not verification.ok:
                    error = f"verification failed: {verification.summary()}"
            except CertkeeperError as exc:
                error = f"verification failed: {exc}"
        if error is not None:
            if previous is not None and not restored_by_binder:
                error += self._roll_back(binder, cert_id, key, previous, bundle)
            return self._record_failed(cert_id, revision_id, key, error, verification, attempts)
        assert verification is not None
        self._record_deployed(cert_id, revision_id, key, bundle, verification)
        if previous is not None:
            try:
                binder.retire(previous, bundle)
            except CertkeeperError as exc:
                log.warning("%s: could not retire revision %s on %s: %s", cert_id, previous.revision, key, exc)
        return DeployResult(key, True, verification.summary(), served_fingerprint=verification.served_fingerprint)

    @staticmethod
    def _roll_back(binder: Binder, cert_id: str, key: str, previous: Bundle, bundle: Bundle) -> str:
        try:
            binder.deploy(previous, bundle)
        except CertkeeperError as exc:
            log.error("%s: rollback on %s failed: %s", cert_id, key, exc, extra={"cert": cert_id})
            return f"; ROLLBACK FAILED: {exc}"
        return f"; rolled back to revision {previous.revision}"

    def _record_failed(
        self, cert_id: str, revision_id: int, key: str, error: str, verification: Verification | None, attempts: int
    ) -> DeployResult:
        node, now = self.context.node, self.context.clock.now()
        served = verification.served_fingerprint if verification else None
        mismatch = verification is not None and not verification.ok
        kind = EventKind.VERIFY_MISMATCH if mismatch else EventKind.DEPLOY_FAILED
        with self.context.store.session() as session:
            found = deployments.update_target(
                session, revision_id, key, node, state=DeploymentState.FAILED.value, error=error, updated_at=now,
                served_fingerprint=served, next_attempt_at=next_attempt_after_failure(attempts, now),
            )
            assert found
            events.record(session, kind.value, f"{key}: {error}", at=now, certificate_id=cert_id,
                          revision_id=revision_id, node=node, details={"binding": key})
        self.alerting.event(
            kind, cert_id, f"{key}: {error}", dedupe=f"{kind.value}:{cert_id}:{revision_id}:{key}:{node}",
            details={"binding": key, "node": node, "served": served or ""},
        )
        return DeployResult(key, False, error, served_fingerprint=served)

    def _record_deployed(
        self, cert_id: str, revision_id: int, key: str, bundle: Bundle, verification: Verification
    ) -> None:
        node, now = self.context.node, self.context.clock.now()
        proven = bool(verification.checks)
        with self.context.store.session() as session:
            found = deployments.update_target(
                session, revision_id, key, node,
                state=(DeploymentState.VERIFIED if proven else DeploymentState.DEPLOYED).value,
                served_fingerprint=verification.served_fingerprint if proven else None,
                verified_at=now if proven else None, deployed_at=now, error=None, next_attempt_at=None,
            )
            assert found
            events.record(
                session, EventKind.DEPLOYED.value,
                f"{key}: revision {bundle.revision} deployed" + (", served certificate verified" if proven else ""),
                at=now, certificate_id=cert_id, revision_id=revision_id, node=node, details={"binding": key},
            )

    def verify_all(self) -> list[tuple[str, str, bool, str]]:
        """Probe every binding of this node for what it serves now; alert on a mismatch."""
        results = []
        node = self.context.node
        for cert_id in self.deployable():
            with self.context.store.session() as session:
                cert = certificates.get(session, cert_id)
                current = revisions.current(session, cert_id)
                bindings = list(cert.bindings or [])
                if current is None:
                    continue
                revision_id = current.id
            for target in self.targets(bindings):
                if not target.options.get("verify"):
                    continue
                try:
                    bundle = self.inventory.bundle(cert_id)
                    verification = self.binder(cert_id, target).verify(bundle)
                    ok, summary, served = verification.ok, verification.summary(), verification.served_fingerprint
                except CertkeeperError as exc:
                    ok, summary, served = False, str(exc), None
                now = self.context.clock.now()
                with self.context.store.session() as session:
                    seen: dict[str, Any] = {"served_fingerprint": served, "updated_at": now}
                    if ok:
                        seen["verified_at"] = now
                    deployments.update_target(session, revision_id, target.key, node, **seen)
                if not ok:
                    self.alerting.event(
                        EventKind.VERIFY_MISMATCH, cert_id, f"{target.key}: {summary}",
                        dedupe=f"verify_mismatch:{cert_id}:{revision_id}:{target.key}:{node}:{served}",
                        details={"binding": target.key, "node": node, "served": served or ""},
                    )
                results.append((cert_id, target.key, ok, summary))
        return results
