"""Several certkeeper processes on one store: who holds what, and who is alive.

One module owns the coordination rules of a CAS array (and of a CLI run beside the daemon):

- a *holder* is ``host:pid:node``: which process holds a lease, so a later process on the same
  host can see that the holder died (its pid is gone) and take over at once;
- *named leases*: the instance lock (one daemon per SQLite store, one per node name on
  PostgreSQL) and the ``issuer`` lease (one node orders certificates);
- *certificate leases*: the row lease a process holds while it issues one certificate, extended
  by the daemon's heartbeat while the issuance runs;
- *heartbeats* and :func:`node_alive`: a node whose heartbeat is older than
  :data:`DEAD_AFTER_TTLS` lease TTLs is down (the rollout gate and ``status --nodes`` use it).

The store rows are :mod:`certkeeper.store.leases`; the process check is :mod:`certkeeper.platform.processes`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from certkeeper.errors import ConcurrencyError, StoreConflict
from certkeeper.platform.processes import pid_alive
from certkeeper.store import leases
from certkeeper.store.unit import Store

log = logging.getLogger(__name__)

#: the lease a node holds while it is the one that orders certificates
ISSUER_LEASE = "issuer"
#: a node whose last heartbeat is older than this many lease TTLs is down
DEAD_AFTER_TTLS = 3


def default_node_name() -> str:
    """This host's short name, lower-case (what a node is called unless configured)."""
    return socket.gethostname().split(".")[0].lower() or "node"


@dataclass(frozen=True)
class Holder:
    """The process holding a lease: ``host:pid:node`` in the store."""

    host: str
    pid: int
    node: str = ""

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.node}"

    @classmethod
    def this_process(cls, node: str) -> Holder:
        return cls(socket.gethostname(), os.getpid(), node)

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder written by :meth:`__str__` (or an older ``host:pid``); None if unreadable."""
        host, _, rest = text.partition(":")
        pid_text, _, node = rest.partition(":")
        if not host or not pid_text.isdigit():
            return None
        return cls(host, int(pid_text), node)

    def is_dead_here(self) -> bool:
        """Whether this holder ran on this host and its process is gone (killed, crashed)."""
        return self.host == socket.gethostname() and not pid_alive(self.pid)


def node_alive(heartbeat_at: datetime | None, now: datetime, ttl: timedelta) -> bool:
    """Whether a node with this last heartbeat counts as up at ``now``."""
    return heartbeat_at is not None and heartbeat_at >= now - DEAD_AFTER_TTLS * ttl


def instance_lease_name(node: str, *, shared_store: bool) -> str:
    """SQLite stores take one daemon; a shared (PostgreSQL) store one daemon per node name."""
    return f"daemon:{node}" if shared_store else "daemon"


class Leases:
    """The leases this process takes, as ``holder``, on ``store`` (times from the store's clock)."""

    def __init__(self, store: Store, holder: Holder) -> None:
        self.store = store
        self.holder = holder
        self._issuing: set[str] = set()
        self._issuing_lock = threading.Lock()

    # -- named leases ---------------------------------------------------------------------------

    def take(self, name: str, ttl: timedelta) -> bool:
        """Take or renew the named lease; False while another live holder has it."""
        try:
            with self.store.session() as session:
                return leases.take(session, name, str(self.holder), self.store.clock.now(), ttl)
        except StoreConflict:
            return False  # two nodes inserted the first row at once; the other one won

    def release(self, name: str) -> None:
        with self.store.session() as session:
            leases.release(session, name, str(self.holder))

    def holder_of(self, name: str) -> tuple[str, datetime] | None:
        with self.store.session() as session:
            return leases.holder(session, name)

    def acquire_instance(self, name: str, ttl: timedelta, *, shared_store: bool, node: str) -> None:
        """The daemon's instance lock; a holder that died on this host is taken over at once.

        Raises:
            ConcurrencyError: another live daemon holds it (the message says what to do).
        """
        if self.take(name, ttl):
            return
        current = self.holder_of(name)
        if current is not None:
            dead = Holder.parse(current[0])
            if dead is not None and dead.is_dead_here():
                log.warning("taking over the lease of a daemon that died (pid %s)", dead.pid)
                with self.store.session() as session:
                    leases.release(session, name, current[0])
                if self.take(name, ttl):
                    return
        where = f"node name {node!r}" if shared_store else "this store"
        holder = current[0] if current else "another process"
        raise ConcurrencyError(
            f"another certkeeper daemon ({holder}) already runs on {where}; "
            + ("give each node its own --node name" if shared_store
               else "SQLite stores take one daemon: use PostgreSQL for several CAS nodes")
        )

    def beat(self, node: str, *, version: str) -> None:
        """Record this node's heartbeat."""
        with self.store.session() as session:
            leases.beat(session, node, host=self.holder.host, version=version, pid=self.holder.pid,
                        now=self.store.clock.now())

    # -- certificate leases ---------------------------------------------------------------------

    @contextmanager
    def issuing(self, cert_id: str, ttl: timedelta) -> Iterator[None]:
        """Hold the certificate's row lease while the block issues it.

        A holder that died on this host is taken over at once (with a warning); the lease is
        released at the end, and extended meanwhile by :meth:`extend_issuing`.

        Raises:
            ConcurrencyError: another live process is issuing this certificate.
        """
        self._take_certificate(cert_id, ttl)
        with self._issuing_lock:
            self._issuing.add(cert_id)
        try:
            yield
        finally:
            with self._issuing_lock:
                self._issuing.discard(cert_id)
            with self.store.session() as session:
                leases.release_certificate(session, cert_id, str(self.holder))

    def _take_certificate(self, cert_id: str, ttl: timedelta) -> None:
        now = self.store.clock.now()
        with self.store.session() as session:
            if leases.take_certificate(session, cert_id, str(self.holder), now, ttl):
                return
            current = leases.certificate_holder(session, cert_id)
        dead = Holder.parse(current) if current else None
        if current is not None and dead is not None and dead.is_dead_here():
            with self.store.session() as session:
                taken = leases.take_certificate_from(session, cert_id, current, str(self.holder), now, ttl)
            if taken:
                log.warning("%s: the process that was issuing it (%s) died; resuming its request", cert_id, current)
                return
        log.info("%s: another process is issuing it (%s)", cert_id, current or "unknown", extra={"cert": cert_id})
        raise ConcurrencyError(
            f"certificate {cert_id!r} is being issued by another certkeeper process"
            f"{f' ({current})' if current else ''}; try again later"
        )

    def extend_issuing(self, ttl: timedelta) -> int:
        """Keep the leases of the certificates this process is issuing right now (not of one whose
        release failed, say while the store was down: that one expires)."""
        with self._issuing_lock:
            issuing = sorted(self._issuing)
        with self.store.session() as session:
            return leases.extend_certificates(session, issuing, str(self.holder), self.store.clock.now(), ttl)
