"""The rollout gate of a CAS array: may this node deploy a new revision now?

Nodes deploy in order: the canary first, then ``rollout_order``, then every other node. A node
deploys a revision only after every live node before it that deploys this certificate has proven
it (deployed and verified); if one of them failed, the rollout stops there and the later nodes
keep serving the previous certificate. A node that is down does not hold the others back, and a
canary with no binding for the certificate never gates it. Pure: the caller gathers the facts.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

from certkeeper.model import SERVED_STATES, DeploymentState

#: a binding with no ``node`` (or ``node = "all"``) is deployed by every node
ALL_NODES = "all"


def rollout_order(canary: str | None, order: Sequence[str]) -> list[str]:
    """Nodes in rollout order: the canary first, then ``order`` (without repeating the canary)."""
    nodes = [canary] if canary else []
    return nodes + [node for node in order if node not in nodes]


def nodes_before(node: str, order: Sequence[str], binding_nodes: Collection[str]) -> list[str]:
    """The nodes that must prove a revision before ``node`` deploys it.

    A node outside ``order`` comes after all of it. Only nodes that deploy the certificate count:
    ``binding_nodes`` are the ``node`` values of its bindings (``all`` for every node).
    """
    before = list(order[: order.index(node)]) if node in order else list(order)
    if ALL_NODES not in binding_nodes:
        before = [other for other in before if other in binding_nodes]
    return before


def rollout_gate(
    node: str,
    order: Sequence[str],
    *,
    binding_nodes: Collection[str],
    alive: Callable[[str], bool],
    states: Mapping[str, Collection[str]],
) -> str | None:
    """Why ``node`` must wait before deploying the revision, or None when it may go ahead.

    ``states`` maps each earlier node to the :class:`DeploymentState` values of this revision on
    its bindings (empty when it has not started).
    """
    if not order or not node:
        return None
    for other in nodes_before(node, order, binding_nodes):
        if not alive(other):
            continue
        seen = set(states.get(other, ()))
        if DeploymentState.FAILED in seen:
            return f"rollout stopped: node {other} failed to deploy this revision"
        if not seen or not seen <= SERVED_STATES:
            return f"waiting for node {other} to deploy and verify this revision first"
    return None
