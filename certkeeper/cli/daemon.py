"""`certkeeper daemon`."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from certkeeper.cli.common import load_config


def _print_systemd_unit(ctx: click.Context, user: str) -> None:
    """The unit for the config a system service would use: ``--config`` and the environment if
    given, else the machine's locations (as root), whoever runs this."""
    import shutil
    from importlib.resources import files

    from certkeeper import config as config_module
    from certkeeper.platform import locations
    from certkeeper.platform.systemd import render_unit, unit_spec

    if sys.platform == "win32":
        raise click.UsageError("--systemd-unit is for Linux; on Windows: certkeeper service install")
    host = locations.this_host()
    machine = locations.Host(host.platform, True, host.environ)
    explicit = (ctx.find_root().obj or {}).get("config_path")
    config = config_module.load(explicit, found=locations.current(explicit, host=machine))
    binary = shutil.which("certkeeper") or f"{sys.executable} -m certkeeper"
    template = files("certkeeper").joinpath("data/certkeeper.service").read_text(encoding="utf-8")
    click.echo(render_unit(template, unit_spec(config, binary=binary, user=user)), nl=False)


def _check_startup(config: Any) -> None:
    """Refuse to start when an exchange binding cannot work here (e.g. Kerberos libraries missing)."""
    from certkeeper.binders.exchange.doctor import startup_problems
    from certkeeper.errors import ConfigError

    bindings = [b.model_dump() for cert in config.settings.certificates for b in cert.bindings]
    problems = startup_problems(bindings)
    if problems:
        raise ConfigError("; ".join(problems))


@click.command()
@click.option("--node", help="This node's name (default: [daemon] node, then the host name).")
@click.option("--once", is_flag=True, help="Run one reconcile pass and exit (for a scheduled task or cron).")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Log format (default: [daemon] log_format).")
@click.option("--systemd-unit", is_flag=True,
              help="Print a systemd unit for this config (the machine's: /etc/certkeeper unless given) and exit.")
@click.option("--user", "unit_user", default="certkeeper", show_default=True,
              help="With --systemd-unit: the account the unit runs as (root reloads a root-owned nginx directly).")
@click.pass_context
def daemon(ctx: click.Context, node: str | None, once: bool, log_format: str | None, systemd_unit: bool,
           unit_user: str) -> None:
    """Run the renewal daemon in the foreground until SIGTERM/SIGINT/CTRL_BREAK (exit 0)."""
    if systemd_unit:
        _print_systemd_unit(ctx, unit_user)
        return
    from certkeeper.daemon import Daemon
    from certkeeper.logs import setup_logging

    config = load_config(ctx)
    _check_startup(config)
    debug = bool((ctx.find_root().obj or {}).get("debug"))
    json_lines = (log_format or config.settings.daemon.log_format) == "json"
    setup_logging(logging.DEBUG if debug else logging.INFO, json_lines=json_lines)
    code = Daemon(config, node=node, once=once).run()
    sys.exit(code)
