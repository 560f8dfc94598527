"""The rollout gate of a CAS array, as tables: who waits for whom, and when a rollout stops."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import pytest

from certkeeper.lifecycle.rollout import nodes_before, rollout_gate, rollout_order
from certkeeper.model import DeploymentState

ORDER = ["cas01", "cas02", "cas03"]
V, D, F, P = DeploymentState.VERIFIED, DeploymentState.DEPLOYED, DeploymentState.FAILED, DeploymentState.DEPLOYING


@pytest.mark.parametrize(
    ("canary", "order", "expected"),
    [
        (None, [], []),
        ("cas01", [], ["cas01"]),
        (None, ["cas02", "cas01"], ["cas02", "cas01"]),
        ("cas03", ["cas01", "cas03", "cas02"], ["cas03", "cas01", "cas02"]),
    ],
)
def test_rollout_order_puts_the_canary_first_once(canary: str | None, order: list[str], expected: list[str]) -> None:
    assert rollout_order(canary, order) == expected


@pytest.mark.parametrize(
    ("node", "binding_nodes", "expected"),
    [
        ("cas01", {"all"}, []),
        ("cas03", {"all"}, ["cas01", "cas02"]),
        ("cas09", {"all"}, ORDER),  # a node outside the order comes after all of it
        ("cas03", {"cas02", "cas03"}, ["cas02"]),  # the canary has no binding for it: it does not gate
        ("cas03", {"cas03"}, []),
    ],
)
def test_nodes_before(node: str, binding_nodes: set[str], expected: list[str]) -> None:
    assert nodes_before(node, ORDER, binding_nodes) == expected


def gate(node: str, states: Mapping[str, Collection[str]], *, down: Collection[str] = (),
         order: list[str] = ORDER, binding_nodes: Collection[str] = ("all",)) -> str | None:
    return rollout_gate(node, order, binding_nodes=binding_nodes, states=states, alive=lambda n: n not in down)


@pytest.mark.parametrize(
    ("node", "states", "down", "expected"),
    [
        ("cas01", {}, (), None),  # the canary goes first
        ("cas02", {"cas01": {V}}, (), None),
        ("cas02", {"cas01": {D}}, (), None),  # deployed with nothing to probe counts as proven
        ("cas02", {"cas01": {V, D}}, (), None),  # two bindings on the canary
        ("cas02", {"cas01": set()}, (), "waiting for node cas01"),
        ("cas02", {}, (), "waiting for node cas01"),
        ("cas02", {"cas01": {P}}, (), "waiting for node cas01"),
        ("cas02", {"cas01": {V, P}}, (), "waiting for node cas01"),  # one binding still going
        ("cas02", {"cas01": {F}}, (), "rollout stopped: node cas01 failed"),
        ("cas02", {"cas01": {V, F}}, (), "rollout stopped: node cas01 failed"),
        ("cas03", {"cas01": {V}, "cas02": {F}}, (), "rollout stopped: node cas02 failed"),
        ("cas03", {"cas01": {F}, "cas02": {V}}, (), "rollout stopped: node cas01 failed"),
        ("cas02", {"cas01": {F}}, ("cas01",), None),  # a node that is down holds nobody back
        ("cas03", {"cas01": set(), "cas02": {V}}, ("cas01",), None),
        ("cas09", {"cas01": {V}, "cas02": {V}, "cas03": set()}, (), "waiting for node cas03"),
    ],
)
def test_rollout_gate(node: str, states: dict[str, set[str]], down: tuple[str, ...], expected: str | None) -> None:
    answer = gate(node, states, down=down)
    if expected is None:
        assert answer is None
    else:
        assert answer is not None and answer.startswith(expected)


def test_no_order_or_no_node_name_never_waits() -> None:
    assert gate("cas02", {"cas01": {F}}, order=[]) is None
    assert gate("", {"cas01": {F}}) is None


def test_only_nodes_that_deploy_the_certificate_gate_it() -> None:
    # the canary failed something else; this certificate is bound on cas02 and cas03 only
    assert gate("cas03", {"cas01": {F}, "cas02": {V}}, binding_nodes={"cas02", "cas03"}) is None
    assert gate("cas03", {"cas02": {F}}, binding_nodes={"cas02", "cas03"}) is not None
