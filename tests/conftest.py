"""Shared fixtures. Servers (Pebble, nginx, HAProxy, SMTP, HTTP stubs, PostgreSQL, a certsrv double)
are started by the fixture modules below, on loopback, on free ports."""

from __future__ import annotations

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
