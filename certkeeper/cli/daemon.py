"""`certkeeper daemon`."""

from __future__ import annotations

import logging
import sys

import click

from certkeeper.cli.common import load_config


@click.command()
@click.option("--node", help="This node's name (default: [daemon] node, then the host name).")
@click.option("--once", is_flag=True, help="Run one reconcile pass and exit (for a scheduled task or cron).")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Log format (default: [daemon] log_format).")
@click.option("--systemd-unit", is_flag=True, help="Print a systemd unit for this installation and exit.")
@click.pass_context
def daemon(ctx: click.Context, node: str | None, once: bool, log_format: str | None, systemd_unit: bool) -> None:
    """Run the renewal daemon in the foreground until SIGTERM/SIGINT (exit 0)."""
    if systemd_unit:
        import shutil
        from importlib.resources import files

        unit = files("certkeeper").joinpath("data/certkeeper.service").read_text(encoding="utf-8")
        binary = shutil.which("certkeeper") or f"{sys.executable} -m certkeeper"
        click.echo(unit.replace("@BIN@", binary), nl=False)
        return
    from certkeeper.daemon import Daemon
    from certkeeper.logs import setup_logging

    config = load_config(ctx)
    debug = bool((ctx.find_root().obj or {}).get("debug"))
    json_lines = (log_format or config.settings.daemon.log_format) == "json"
    setup_logging(logging.DEBUG if debug else logging.INFO, json_lines=json_lines)
    code = Daemon(config, node=node, once=once).run()
    sys.exit(code)
