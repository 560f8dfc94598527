"""The deployments aggregate: a revision on one binding of one node, and what it serves.

Every function takes the caller's session (see :class:`certkeeper.store.unit.Store`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from certkeeper.model import SERVED_STATES, DeploymentState
from certkeeper.store.schema import DeploymentRow


def find(session: Session, revision_id: int, binding: str, node: str) -> DeploymentRow | None:
    return session.scalars(
        select(DeploymentRow).where(
            DeploymentRow.revision_id == revision_id, DeploymentRow.binding == binding, DeploymentRow.node == node
        )
    ).first()


def start(session: Session, cert_id: str, revision_id: int, binding: str, node: str, now: datetime) -> DeploymentRow:
    """Mark the revision as being deployed on ``binding`` (one more attempt); returns the row."""
    row = find(session, revision_id, binding, node)
    if row is None:
        row = DeploymentRow(
            certificate_id=cert_id, revision_id=revision_id, binding=binding, node=node,
            state=DeploymentState.DEPLOYING.value, attempts=0, details={}, updated_at=now,
        )
        session.add(row)
    row.state, row.attempts, row.updated_at = DeploymentState.DEPLOYING.value, row.attempts + 1, now
    return row


def last_served_revision(session: Session, cert_id: str, binding: str, node: str, *, other_than: int) -> int | None:
    """The revision row id last deployed on this binding and node, other than ``other_than``:
    what to roll back to."""
    return session.scalars(
        select(DeploymentRow.revision_id)
        .where(
            DeploymentRow.certificate_id == cert_id, DeploymentRow.binding == binding, DeploymentRow.node == node,
            DeploymentRow.revision_id != other_than,
            DeploymentRow.state.in_([state.value for state in SERVED_STATES]),
        )
        .order_by(DeploymentRow.updated_at.desc())
        .limit(1)
    ).first()


def states_by_node(session: Session, cert_id: str, revision_id: int, nodes: Iterable[str]) -> dict[str, set[str]]:
    """For each node, the states of ``revision_id`` on its bindings (empty: not started there)."""
    wanted = list(nodes)
    states: dict[str, set[str]] = {node: set() for node in wanted}
    rows = session.execute(
        select(DeploymentRow.node, DeploymentRow.state).where(
            DeploymentRow.certificate_id == cert_id, DeploymentRow.revision_id == revision_id,
            DeploymentRow.node.in_(wanted),
        )
    )
    for node, state in rows:
        states[node].add(state)
    return states


def all_rows(session: Session, cert_id: str | None = None) -> list[DeploymentRow]:
    query = select(DeploymentRow).order_by(DeploymentRow.certificate_id, DeploymentRow.id)
    if cert_id is not None:
        query = query.where(DeploymentRow.certificate_id == cert_id)
    return list(session.scalars(query))


def latest_per_target(rows: Iterable[DeploymentRow]) -> dict[tuple[str, str, str], DeploymentRow]:
    """The newest row per (certificate, node, binding): what each target holds now."""
    latest: dict[tuple[str, str, str], DeploymentRow] = {}
    for row in rows:
        key = (row.certificate_id, row.node, row.binding)
        if key not in latest or row.updated_at >= latest[key].updated_at:
            latest[key] = row
    return latest
