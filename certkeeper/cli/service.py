"""`certkeeper service`: the daemon as a native Windows service (install, uninstall, start, stop, status).

On Linux every subcommand exits 2 with "Windows only": there the daemon runs under systemd
(``certkeeper daemon --systemd-unit``). The logic is in :mod:`certkeeper.platform.winservice`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from certkeeper.cli.common import console, print_json

if TYPE_CHECKING:
    from certkeeper.platform.winservice import RunnableDaemon, ServiceControl


def _windows_only(ctx: click.Context) -> None:
    if sys.platform != "win32":
        click.echo(f"error: certkeeper service {ctx.info_name} is Windows only; on Linux run the daemon under "
                   "systemd: certkeeper daemon --systemd-unit", err=True)
        ctx.exit(2)


def _control() -> ServiceControl:
    from certkeeper.platform.winservice import Win32ServiceControl

    return Win32ServiceControl()


@click.group()
def service() -> None:
    """The daemon as a Windows service (automatic delayed start, restart on failure, Event Log)."""


@service.command()
@click.option("--account", help="Run as this account: a gMSA (CONTOSO\\svc-certkeeper$) or a named account "
                                "(its password is asked for). Default: LocalSystem.")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The named account's password, first line (instead of the prompt).")
@click.pass_context
def install(ctx: click.Context, account: str | None, password_file: Path | None) -> None:
    """Register the service for this config and data folder (from an elevated prompt)."""
    _windows_only(ctx)
    import os

    from certkeeper.cli.common import load_config
    from certkeeper.config import DATA_DIR_ENV
    from certkeeper.platform import winservice
    from certkeeper.platform.protection import check_private_dir, guard_for

    config = load_config(ctx)
    config_file = config.path or (config.locations.config_file if config.locations else None)
    if config_file is None or not Path(config_file).exists():
        raise click.UsageError(f"no config file at {config_file}: run certkeeper init first")
    password = None
    if winservice.needs_password(account):
        password = (password_file.read_text(encoding="utf-8").splitlines() or [""])[0] if password_file else \
            click.prompt(f"Password of {account}", hide_input=True)
    spec = winservice.service_spec(python=sys.executable, config_file=str(Path(config_file).resolve()),
                                   data_dir=os.environ.get(DATA_DIR_ENV), account=account, password=password)
    control = _control()
    guard = guard_for(sys.platform)

    def protect_data(_account: str | None) -> None:
        # the guard asks the SCM for the account just registered, so it is in the folder's DACL
        check_private_dir(config.data_dir, guard=guard)

    out = console()
    for step in winservice.install(control, spec, protect_data=protect_data):
        out.print(step)
    out.print(f"Command: {spec.command_line}")
    out.print("Start it: certkeeper service start (it also starts at boot, delayed)")


@service.command()
@click.pass_context
def uninstall(ctx: click.Context) -> None:
    """Stop the service (letting the running step finish) and remove it; the store stays."""
    _windows_only(ctx)
    from certkeeper.platform import winservice

    winservice.uninstall(_control())
    console().print("Removed the certkeeper service; the config, store and logs are kept.")


@service.command()
@click.pass_context
def start(ctx: click.Context) -> None:
    """Start the service."""
    _windows_only(ctx)
    from certkeeper.platform.protection import SERVICE_NAME

    _control().start(SERVICE_NAME)
    console().print("Start requested: certkeeper service status shows it; the log is in <data>\\logs.")


@service.command()
@click.pass_context
def stop(ctx: click.Context) -> None:
    """Stop the service: the running step finishes first (as SIGTERM does on Linux)."""
    _windows_only(ctx)
    from certkeeper.platform.protection import SERVICE_NAME
    from certkeeper.platform.winservice import STOP_WAIT_SECONDS

    _control().stop(SERVICE_NAME, STOP_WAIT_SECONDS)
    console().print("Stopped.")


@service.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Whether the service is installed and running, as which account, with which command."""
    _windows_only(ctx)
    from dataclasses import asdict

    from certkeeper.platform.protection import SERVICE_NAME
    from certkeeper.platform.winservice import describe

    found = _control().query(SERVICE_NAME)
    if as_json:
        print_json(None if found is None else asdict(found))
        return
    for line in describe(found):
        console().print(line)


@service.command(hidden=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="The data folder (from the install).")
@click.pass_context
def run(ctx: click.Context, data_dir: str | None) -> None:
    """What the Service Control Manager starts; not for a prompt (use certkeeper daemon there)."""
    _windows_only(ctx)
    import logging
    import os

    from certkeeper.cli.common import load_config
    from certkeeper.config import DATA_DIR_ENV
    from certkeeper.logs import setup_logging
    from certkeeper.platform import winservice_scm

    if data_dir:
        os.environ[DATA_DIR_ENV] = data_dir
    debug = bool((ctx.find_root().obj or {}).get("debug"))
    level = logging.DEBUG if debug else logging.INFO

    def make_daemon() -> RunnableDaemon:
        from certkeeper.cli.daemon import _check_startup
        from certkeeper.daemon import Daemon

        setup_logging(level, stderr=False, event_log=True)  # until the config says where the log file is
        config = load_config(ctx)
        setup_logging(level, json_lines=config.settings.daemon.log_format == "json", stderr=False,
                      log_file=config.data_dir / "logs" / "certkeeper.log", event_log=True)
        _check_startup(config)
        return Daemon(config, as_service=True)

    try:
        winservice_scm.dispatch(make_daemon)
    except Exception as exc:
        if getattr(exc, "winerror", None) == 1063:  # ERROR_FAILED_SERVICE_CONTROLLER_CONNECT
            raise click.UsageError("certkeeper service run is started by the Service Control Manager; "
                                   "in a prompt run certkeeper daemon") from None
        raise
