"""The deployments aggregate: a revision on one binding of one node, and what it serves.

Every function takes the caller's session (see :class:`certkeeper.store.unit.Store`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, CursorResult, insert, select, update

from certkeeper.model import SERVED_STATES, DeploymentState, RevisionState
from certkeeper.store.revisions import latest_numbers
from certkeeper.store.tables import deployments as deployment_table
from certkeeper.store.tables import revisions as revision_table

D = deployment_table.c


@dataclass(frozen=True)
class Deployment:
    """One row of the ``deployments`` table."""

    id: int
    certificate_id: str
    revision_id: int
    binding: str
    node: str
    state: str
    served_fingerprint: str | None
    verified_at: datetime | None
    deployed_at: datetime | None
    attempts: int
    next_attempt_at: datetime | None
    error: str | None
    details: dict[str, Any]
    updated_at: datetime


def find(session: Connection, revision_id: int, binding: str, node: str) -> Deployment | None:
    row = session.execute(
        select(deployment_table).where(D.revision_id == revision_id, D.binding == binding, D.node == node)
    ).first()
    return None if row is None else Deployment(**row._mapping)


def start(session: Connection, cert_id: str, revision_id: int, binding: str, node: str, now: datetime) -> Deployment:
    """Mark the revision as being deployed on ``binding`` (one more attempt); returns the row."""
    row = find(session, revision_id, binding, node)
    if row is None:
        session.execute(insert(deployment_table).values(
            certificate_id=cert_id, revision_id=revision_id, binding=binding, node=node,
            state=DeploymentState.DEPLOYING.value, attempts=1, details={}, updated_at=now,
        ))
    else:
        session.execute(update(deployment_table).where(D.id == row.id).values(
            state=DeploymentState.DEPLOYING.value, attempts=row.attempts + 1, updated_at=now))
    started = find(session, revision_id, binding, node)
    assert started is not None
    return started


def update_target(session: Connection, revision_id: int, binding: str, node: str, **values: Any) -> bool:
    """Change columns of the row of ``revision_id`` on ``binding`` and ``node``; False if there is none."""
    result = session.execute(update(deployment_table).where(
        D.revision_id == revision_id, D.binding == binding, D.node == node).values(**values))
    assert isinstance(result, CursorResult)
    return bool(result.rowcount)


def last_served_revision(session: Connection, cert_id: str, binding: str, node: str, *,
                         other_than: int) -> int | None:
    """The revision row id last deployed on this binding and node, other than ``other_than``:
    what to roll back to."""
    return session.scalars(
        select(D.revision_id)
        .where(
            D.certificate_id == cert_id, D.binding == binding, D.node == node,
            D.revision_id != other_than,
            D.state.in_([state.value for state in SERVED_STATES]),
        )
        .order_by(D.updated_at.desc())
        .limit(1)
    ).first()


def states_by_node(session: Connection, cert_id: str, revision_id: int, nodes: Iterable[str]) -> dict[str, set[str]]:
    """For each node, the states of ``revision_id`` on its bindings (empty: not started there)."""
    wanted = list(nodes)
    states: dict[str, set[str]] = {node: set() for node in wanted}
    rows = session.execute(
        select(D.node, D.state).where(
            D.certificate_id == cert_id, D.revision_id == revision_id,
            D.node.in_(wanted),
        )
    )
    for node, state in rows:
        states[node].add(state)
    return states


def serving_current(session: Connection, node: str) -> dict[str, set[str]]:
    """certificate id -> the bindings of ``node`` that serve its current (newest issued) revision,
    for every certificate at once."""
    revision = revision_table.c
    latest = latest_numbers(RevisionState.ISSUED)
    rows = session.execute(
        select(D.certificate_id, D.binding)
        .join(revision_table, revision.id == D.revision_id)
        .join(latest, (latest.c.certificate_id == revision.certificate_id) & (latest.c.number == revision.number))
        .where(D.node == node, D.state.in_([state.value for state in SERVED_STATES]))
    )
    serving: dict[str, set[str]] = {}
    for cert_id, binding in rows:
        serving.setdefault(cert_id, set()).add(binding)
    return serving


def all_rows(session: Connection, cert_id: str | None = None) -> list[Deployment]:
    query = select(deployment_table).order_by(D.certificate_id, D.id)
    if cert_id is not None:
        query = query.where(D.certificate_id == cert_id)
    return [Deployment(**row._mapping) for row in session.execute(query)]


def latest_per_target(rows: Iterable[Deployment]) -> dict[tuple[str, str, str], Deployment]:
    """The newest row per (certificate, node, binding): what each target holds now."""
    latest: dict[tuple[str, str, str], Deployment] = {}
    for row in rows:
        key = (row.certificate_id, row.node, row.binding)
        if key not in latest or row.updated_at >= latest[key].updated_at:
            latest[key] = row
    return latest
