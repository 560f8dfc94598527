"""Shared fixtures. Servers (Pebble, nginx, HAProxy, SMTP, HTTP stubs, PostgreSQL, a certsrv double)
are started by the fixture modules below, on loopback, on free ports."""

from __future__ import annotations

import os
from pathlib import Path

pytest_plugins = [
    "tests.fixtures.core",
    "tests.fixtures.pebble",
    "tests.fixtures.gateways",
    "tests.fixtures.mail",
    "tests.fixtures.http",
    "tests.fixtures.postgres",
    "tests.fixtures.certsrv",
    "tests.fixtures.powerdns",
    "tests.fixtures.acmedns",
    "tests.fixtures.dns_server",
    "tests.fixtures.browser",
]


def _servers_on_path() -> None:
    """nginx, haproxy and named live in /usr/sbin, which is not on a normal user's PATH on Debian;
    Pebble 2.6 is unpacked beside apt (tests/run). Put them on PATH for the tests and for the
    processes they start, so that plain ``pytest`` finds them too."""
    pebble = Path(os.environ.get("PEBBLE_ROOT", "/opt/pebble-trixie")) / "root" / "usr" / "bin"
    path = os.environ.get("PATH", "").split(os.pathsep)
    extra = [str(folder) for folder in (pebble, Path("/usr/sbin"), Path("/sbin"))
             if folder.is_dir() and str(folder) not in path]
    if extra:
        os.environ["PATH"] = os.pathsep.join([*path, *extra])


_servers_on_path()
