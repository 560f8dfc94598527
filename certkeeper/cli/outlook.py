"""``certkeeper plan`` and ``certkeeper check``: Outlook Anywhere names and endpoint judgement."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from certkeeper.model import DEFAULT_KEY_TYPE, KeyType


def _fail() -> None:
    # SystemExit, not click's Exit: with standalone_mode=False click *returns* an Exit's code,
    # and cli.main() does not pass that return value on.
    sys.exit(1)


_STYLE = {
    "pass": "green",
    "warn": "yellow",
    "fail": "red",
    "error": "red",
    "warning": "yellow",
    "info": "cyan",
}


def _print_plan(result: Any, legacy_host: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="Certificate names", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("Name")
    table.add_column("Why")
    for index, name in enumerate(result.names, 1):
        why = (
            "Subject CN + SAN (Outlook Anywhere, OWA, EWS, ...)"
            if index == 1
            else (
                "Autodiscover"
                if name.startswith("autodiscover.")
                else "legacy namespace"
                if legacy_host and name == legacy_host.lower()
                else "extra name"
            )
        )
        table.add_row(str(index), name, why)
    console.print(table)
    console.print(f"Principal: [bold]{result.principal}[/bold]")
    console.print(f'  Set-OutlookProvider EXPR -CertPrincipalName "{result.principal}"', markup=False)
    if result.notes:
        notes = Table(title="Notes")
        notes.add_column("Severity")
        notes.add_column("Code")
        notes.add_column("Message", overflow="fold")
        for note in result.notes:
            notes.add_row(f"[{_STYLE[note.severity]}]{note.severity}[/]", note.code, note.message)
        console.print(notes)


def _from_exchange(
    server: str, version: str, runner: str, username: str | None, password: str | None, public_ca: bool
) -> Any:
    """Read the server's own settings (read-only) and plan from them."""
    import os
    from pathlib import Path

    from certkeeper.binders.exchange import discovery
    from certkeeper.binders.powershell import ExchangeVersion
    from certkeeper.binders.windows import RunnerOptions, session_factory
    from certkeeper.errors import ConfigError

    def resolve(reference: str) -> str:
        scheme, _, rest = reference.partition(":")
        if scheme == "env" and rest in os.environ:
            return os.environ[rest]
        if scheme == "file" and rest:
            return Path(rest).expanduser().read_text(encoding="utf-8").strip()
        raise ConfigError(f"--password {scheme}:...: give env:VAR or file:PATH")

    options = RunnerOptions.model_validate({"runner": runner, "username": username, "password": password})
    exchange = ExchangeVersion(version)
    make = session_factory(
        options, resolve_secret=resolve, exchange=exchange, port=80, path="PowerShell", windows_port=None
    )
    session = make(server)
    try:
        found = discovery.discover(session.exchange, exchange, server)
    finally:
        session.close()
    return discovery.plan_from(found, public_ca=public_ca), found


@click.command()
@click.option("--external-host", help="The Outlook Anywhere / OWA namespace, e.g. mail.contoso.com.")
@click.option(
    "--from-exchange",
    "from_exchange",
    metavar="SERVER",
    help="Read the names from this Exchange server's own settings (read-only; its FQDN).",
)
@click.option(
    "--exchange-version",
    type=click.Choice(["2010", "2013", "2016", "2019", "se"]),
    default="2019",
    show_default=True,
    help="With --from-exchange.",
)
@click.option(
    "--runner",
    type=click.Choice(["remote", "local"]),
    default="remote",
    show_default=True,
    help="With --from-exchange: PSRP with Kerberos, or powershell.exe on this server.",
)
@click.option("--username", help="With --from-exchange: a UPN (user@CONTOSO.COM); default the Kerberos ticket.")
@click.option("--password", help="With --from-exchange: env:VAR or file:PATH.")
@click.option("--domain", "domains", multiple=True, help="An SMTP domain that needs autodiscover.<domain> (repeat).")
@click.option("--legacy-host", help="The legacy name during coexistence with older Exchange.")
@click.option("--name", "extra_names", multiple=True, help="Any other name to include (repeat).")
@click.option("--principal", help="The msstd: principal (default msstd:<external host>).")
@click.option(
    "--public/--internal",
    "public_ca",
    default=True,
    show_default=True,
    help="Whether a public CA (no internal names) or an internal CA (AD CS) issues it.",
)
@click.option(
    "--key-type",
    type=click.Choice([k.value for k in KeyType]),
    default=DEFAULT_KEY_TYPE.value,
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plan(
    external_host: str | None,
    from_exchange: str | None,
    exchange_version: str,
    runner: str,
    username: str | None,
    password: str | None,
    domains: tuple[str, ...],
    legacy_host: str | None,
    extra_names: tuple[str, ...],
    principal: str | None,
    public_ca: bool,
    key_type: str,
    as_json: bool,
) -> None:
    """The names an Outlook Anywhere certificate needs, its msstd: principal, and warnings.

    Exit status 1 when a note is an error (e.g. internal names with a public CA).
    """
    from certkeeper.outlook.planner import plan as make_plan

    if from_exchange:
        result, found = _from_exchange(from_exchange, exchange_version, runner, username, password, public_ca)
        if as_json:
            data = result.to_dict()
            data["read"] = [{"host": f.host, "source": f.source, "fix": f.fix} for f in found.found]
            data["outlook_anywhere"] = found.auth
            click.echo(json.dumps(data, indent=2))
        else:
            _print_plan(result, None)
            for key, value in found.auth.items():
                click.echo(f"Get-OutlookAnywhere {key}: {value}")
        if not result.ok:
            _fail()
        return
    if not external_host:
        raise click.UsageError("give --external-host or --from-exchange SERVER")
    result = make_plan(
        external_host,
        domains,
        legacy_host=legacy_host,
        principal=principal,
        public_ca=public_ca,
        key_type=KeyType(key_type),
        extra_names=extra_names,
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_plan(result, legacy_host)
    if not result.ok:
        _fail()


@click.command()
@click.argument("url")
@click.option("--connect", metavar="HOST:PORT", help="Probe this server (behind the load balancer) instead.")
@click.option(
    "--principal",
    help="The msstd: principal to match: EXPR's CertPrincipalName (Get-OutlookProvider "
    "EXPR) when it is set, else msstd:<URL host>.",
)
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), help="Trust these roots only.")
@click.option("--name", "names", multiple=True, help="Another name the certificate must cover (repeat).")
@click.option("--timeout", type=float, default=10, show_default=True, help="Seconds per connection.")
@click.option(
    "--auth",
    type=click.Choice(["ntlm", "basic", "negotiate"]),
    help="The method Outlook is set to use: /rpc/rpcproxy.dll must offer it in its 401.",
)
@click.option("--domain", help="An SMTP domain: probe Autodiscover for it in Outlook's order.")
@click.option("--connect-http", metavar="HOST:PORT", help="Where the http:// Autodiscover redirect is probed.")
@click.option("--dns", "nameserver", metavar="HOST:PORT", help="The DNS server asked for the Autodiscover SRV record.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(
    url: str,
    connect: str | None,
    principal: str | None,
    ca_file: str | None,
    names: tuple[str, ...],
    timeout: float,
    auth: str | None,
    domain: str | None,
    connect_http: str | None,
    nameserver: str | None,
    as_json: bool,
) -> None:
    """Judge an Outlook Anywhere endpoint as Outlook would.

    Exit status 0 when every item passes (warnings allowed), 1 when any fails.
    """
    from certkeeper.outlook.checker import check as run_check

    report = run_check(
        url,
        connect=connect,
        principal=principal,
        ca_file=ca_file,
        names=names,
        timeout=timeout,
        auth=auth,
        domain=domain,
        connect_http=connect_http,
        nameserver=nameserver,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console()
        table = Table(title=f"{report.url} via {report.connect}")
        table.add_column("Result")
        table.add_column("Check")
        table.add_column("Detail", overflow="fold")
        for item in report.items:
            style = _STYLE[item.status.value]
            table.add_row(f"[{style}]{item.status.value.upper()}[/]", item.title, item.detail)
        console.print(table)
        failures = report.failures()
        console.print(
            "[green]Outlook would connect.[/]" if not failures else f"[red]{len(failures)} check(s) failed.[/]"
        )
    if not report.ok:
        _fail()
