"""The Outlook Anywhere name planner and ``certkeeper plan``."""

from __future__ import annotations

import json

import pytest

from certkeeper.errors import InvalidName
from certkeeper.hostnames import covers, is_internal
from certkeeper.model import KeyType
from certkeeper.outlook.planner import plan
from tests.fixtures.core import run_cli


def codes(result: object) -> list[str]:
    return [note.code for note in result.notes]  # type: ignore[attr-defined]


def test_names_principal_and_order() -> None:
    result = plan(
        "Mail.Contoso.com.", ["contoso.com", "fabrikam.com", "contoso.com"], legacy_host="legacy.contoso.com"
    )
    assert result.common_name == "mail.contoso.com"
    assert result.names == (
        "mail.contoso.com",
        "autodiscover.contoso.com",
        "autodiscover.fabrikam.com",
        "legacy.contoso.com",
    )
    assert result.principal == "msstd:mail.contoso.com"
    assert result.ok and codes(result) == []


def test_external_host_that_is_the_autodiscover_name_is_not_repeated() -> None:
    assert plan("autodiscover.contoso.com", ["contoso.com"]).names == ("autodiscover.contoso.com",)


@pytest.mark.parametrize(
    ("kwargs", "expected", "ok"),
    [
        (
            {"external_host": "mail.contoso.local", "domains": ["contoso.com"]},
            ["internal-name-public-ca"],
            False,
        ),
        (
            {"external_host": "mail.contoso.local", "domains": ["contoso.com"], "public_ca": False},
            ["internal-name"],
            True,
        ),
        ({"external_host": "*.contoso.com", "domains": ["contoso.com"]}, ["wildcard-msstd"], True),
        (
            {"external_host": "mail.contoso.test", "domains": ["contoso.test"]},
            ["special-use-public-ca", "special-use-public-ca"],
            False,
        ),
        ({"external_host": "mail.contoso.test", "domains": ["contoso.test"], "public_ca": False}, [], True),
        (
            {
                "external_host": "mail.contoso.com",
                "domains": ["contoso.com"],
                "principal": "msstd:owa.contoso.com",
            },
            ["principal-not-cn", "principal-not-covered"],
            False,
        ),
        (
            {
                "external_host": "mail.contoso.com",
                "domains": ["contoso.com"],
                "principal": "autodiscover.contoso.com",
            },
            ["principal-not-cn"],
            True,
        ),
        (
            {"external_host": "mail.contoso.com", "domains": ["contoso.com"], "key_type": KeyType.ECDSA_P256},
            ["ecdsa-exchange"],
            True,
        ),
        ({"external_host": "mail.contoso.com"}, ["no-autodiscover"], True),
        ({"external_host": ("a" * 60) + ".contoso.com", "domains": ["contoso.com"]}, ["cn-too-long"], False),
    ],
)
def test_warnings(kwargs: dict[str, object], expected: list[str], ok: bool) -> None:
    external = kwargs.pop("external_host")
    domains = kwargs.pop("domains", [])
    result = plan(external, domains, **kwargs)  # type: ignore[arg-type]
    assert codes(result) == expected
    assert result.ok is ok


def test_wildcard_principal() -> None:
    result = plan("*.contoso.com", ["contoso.com"], principal="msstd:*.contoso.com")
    assert result.principal == "msstd:*.contoso.com" and "principal-not-covered" not in codes(result)
    assert "msstd:*.contoso.com" in result.notes[0].message


@pytest.mark.parametrize(
    "bad", ["mail_contoso.com", "-mail.contoso.com", "mail..contoso.com", "a.*.contoso.com"]
)
def test_bad_names(bad: str) -> None:
    with pytest.raises(InvalidName):
        plan(bad)


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("mail.contoso.com", "MAIL.contoso.com.", True),
        ("*.contoso.com", "mail.contoso.com", True),
        ("*.contoso.com", "contoso.com", False),
        ("*.contoso.com", "a.mail.contoso.com", False),
        ("*.com", "contoso.com", False),
    ],
)
def test_covers(pattern: str, host: str, expected: bool) -> None:
    assert covers(pattern, host) is expected


@pytest.mark.parametrize(
    ("name", "internal"),
    [
        ("exch01", True),
        ("mail.contoso.local", True),
        ("x.corp", True),
        ("10.0.0.5", True),
        ("1.0.0.10.in-addr.arpa", True),
        ("mail.contoso.com", False),
        ("8.8.8.8", False),
        ("a.b.co.uk", False),
    ],
)
def test_internal_names(name: str, internal: bool) -> None:
    assert is_internal(name) is internal


def test_cli_plan_human_and_json() -> None:
    human = run_cli(
        "plan",
        "--external-host",
        "mail.contoso.com",
        "--domain",
        "contoso.com",
        "--domain",
        "fabrikam.com",
        "--legacy-host",
        "legacy.contoso.com",
    )
    assert human.returncode == 0, human.stderr
    for text in (
        "autodiscover.fabrikam.com",
        "legacy namespace",
        "msstd:mail.contoso.com",
        'Set-OutlookProvider EXPR -CertPrincipalName "msstd:mail.contoso.com"',
    ):
        assert text in human.stdout
    bad = run_cli(
        "plan",
        "--external-host",
        "exch01.contoso.local",
        "--domain",
        "contoso.com",
        "--key-type",
        "ecdsa-p256",
        "--json",
    )
    assert bad.returncode == 1, bad.stderr
    data = json.loads(bad.stdout)
    assert data["names"] == ["exch01.contoso.local", "autodiscover.contoso.com"]
    assert [n["code"] for n in data["notes"]] == ["internal-name-public-ca", "ecdsa-exchange"]
    internal = run_cli("plan", "--external-host", "exch01.contoso.local", "--internal", "--json")
    assert internal.returncode == 0 and json.loads(internal.stdout)["ok"] is True


def test_plan_from_the_outlook_anywhere_table() -> None:
    from certkeeper.config import parse
    from certkeeper.outlook.planner import plan_from_settings

    config = parse(
        {
            "outlook_anywhere": {
                "external_host": "mail.contoso.com",
                "domains": ["contoso.com"],
                "legacy_host": "legacy.contoso.com",
                "extra_names": ["imap.contoso.com"],
            }
        }
    )
    assert config.settings.outlook_anywhere is not None
    result = plan_from_settings(config.settings.outlook_anywhere)
    assert result.names == (
        "mail.contoso.com",
        "autodiscover.contoso.com",
        "legacy.contoso.com",
        "imap.contoso.com",
    )
