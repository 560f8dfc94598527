"""Listening sockets for certkeeper's own servers (metrics, the http-01 standalone listener).

A wildcard address listens on IPv6 *and* IPv4 with one socket: ``::`` with IPV6_V6ONLY off, the
way Go's net package and nginx's ``listen [::]:80 ipv6only=off`` do (RFC 3493 §5.3), falling back
to 0.0.0.0 on a machine without IPv6. A specific address (127.0.0.1, ::1, 192.0.2.10) listens on
that address only, so loopback defaults stay loopback.
"""

from __future__ import annotations

import logging
import socket
from http.server import ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


def is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::", "*")  # noqa: S104 - recognising, not binding


def dual_stack_server(server_class: type[ThreadingHTTPServer], host: str, port: int, handler: Any,
                      **kwargs: Any) -> ThreadingHTTPServer:
    """``server_class((host, port), handler, **kwargs)``, dual stack when ``host`` is a wildcard
    ("", "0.0.0.0", "::", "*"); an IPv6 literal listens on IPv6."""
    if is_wildcard(host) and socket.has_ipv6:
        class DualStack(server_class):  # type: ignore[valid-type,misc]
            address_family = socket.AF_INET6

            def server_bind(self) -> None:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                super().server_bind()

        try:
            return DualStack(("::", port), handler, **kwargs)
        except OSError as exc:
            log.debug("no IPv6 listener on port %d (%s); listening on IPv4 only", port, exc)
            return server_class(("0.0.0.0", port), handler, **kwargs)  # noqa: S104 - the operator asked for all
    if ":" in host:
        class Ipv6(server_class):  # type: ignore[valid-type,misc]
            address_family = socket.AF_INET6

        return Ipv6((host, port), handler, **kwargs)
    return server_class(("0.0.0.0" if is_wildcard(host) else host, port), handler, **kwargs)  # noqa: S104
