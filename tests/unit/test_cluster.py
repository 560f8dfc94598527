"""The pure parts of certkeeper.cluster: the holder string, and when a node counts as down."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest

from certkeeper.cluster import DEAD_AFTER_TTLS, Holder, instance_lease_name, node_alive

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TTL = timedelta(seconds=10)


@pytest.mark.parametrize(
    ("heartbeat_at", "alive"),
    [
        (None, False),  # never beat
        (NOW, True),
        (NOW + timedelta(seconds=5), True),  # a clock a little ahead of ours
        (NOW - DEAD_AFTER_TTLS * TTL + timedelta(seconds=1), True),
        (NOW - DEAD_AFTER_TTLS * TTL, True),  # exactly three TTLs: still up
        (NOW - DEAD_AFTER_TTLS * TTL - timedelta(microseconds=1), False),
        (NOW - timedelta(days=1), False),
    ],
)
def test_a_node_is_down_once_its_heartbeat_is_more_than_three_ttls_old(
    heartbeat_at: datetime | None, alive: bool
) -> None:
    assert DEAD_AFTER_TTLS == 3
    assert node_alive(heartbeat_at, NOW, TTL) is alive


@pytest.mark.parametrize(
    ("text", "holder"),
    [
        ("cas01-host:4242:cas01", Holder("cas01-host", 4242, "cas01")),
        ("cas01-host:4242", Holder("cas01-host", 4242, "")),  # written by older versions
        ("cas01-host:4242:", Holder("cas01-host", 4242, "")),
        ("host:1:node:with:colons", Holder("host", 1, "node:with:colons")),
        ("", None),
        (":4242:cas01", None),
        ("cas01-host:pid:cas01", None),
        ("cas01-host", None),
    ],
)
def test_holder_parse(text: str, holder: Holder | None) -> None:
    assert Holder.parse(text) == holder
    if holder is not None and holder.node:
        assert str(holder) == text


def test_this_process_is_alive_here_and_another_hosts_process_is_never_judged() -> None:
    me = Holder.this_process("cas01")
    assert str(me).endswith(":cas01") and Holder.parse(str(me)) == me
    assert not me.is_dead_here()
    assert not Holder("some-other-host.invalid", 999_999_999, "cas02").is_dead_here()
    assert Holder(socket.gethostname(), 999_999_999, "cas02").is_dead_here()


def test_sqlite_stores_take_one_daemon_postgresql_one_per_node_name() -> None:
    assert instance_lease_name("cas01", shared_store=False) == "daemon"
    assert instance_lease_name("cas01", shared_store=True) == "daemon:cas01"
