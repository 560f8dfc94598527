"""The ``certkeeper`` command line.

Commands live one module per noun and are imported only when invoked, so ``certkeeper --help``
imports nothing heavy. Exit status: 0 success, 1 a certkeeper error, 2 usage.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys

import click

# command name -> (module, attribute, one-line help shown by --help without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("certkeeper.cli.setup", "init", "Write an example config, create the data dir and key, migrate."),
    "issue": ("certkeeper.cli.certs", "issue", "Issue a certificate and put it under management."),
    "list": ("certkeeper.cli.certs", "list_", "List managed certificates with their health."),
    "show": ("certkeeper.cli.certs", "show", "Show one certificate in detail."),
    "export": ("certkeeper.cli.certs", "export", "Export a certificate as PEM or PFX."),
    "import": ("certkeeper.cli.certs", "import_", "Bring an existing PEM or PFX under management."),
    "remove": ("certkeeper.cli.certs", "remove", "Stop managing a certificate (keeps nothing)."),
    "renew": ("certkeeper.cli.renew", "renew", "Renew due certificates (or --force) now."),
    "revoke": ("certkeeper.cli.renew", "revoke", "Revoke a certificate's current revision at its CA."),
    "status": ("certkeeper.cli.status", "status", "Health, next renewal, failures, alerts, served state."),
    "deploy": ("certkeeper.cli.deploy", "deploy", "Deploy the current revision and verify; --dry-run shows it."),
    "daemon": ("certkeeper.cli.daemon", "daemon", "Run the renewal daemon in the foreground."),
    "service": ("certkeeper.cli.service", "service", "Windows service: install, uninstall, start, stop, status."),
    "ca": ("certkeeper.cli.ca", "ca", "The built-in CA: init, export the root."),
    "account": ("certkeeper.cli.account", "account", "ACME accounts: register, show, deactivate."),
    "notify": ("certkeeper.cli.notify", "notify", "Alerts: send a test message."),
    "secret": ("certkeeper.cli.secret", "secret", "Store a named secret (webhook URL, password) encrypted."),
    "plan": ("certkeeper.cli.outlook", "plan", "The names an Outlook Anywhere certificate needs."),
    "check": ("certkeeper.cli.outlook", "check", "Judge an Outlook Anywhere endpoint as Outlook would."),
    "doctor": ("certkeeper.cli.doctor", "doctor", "Exchange pre-flight: Auth cert, 444, SNI, rights, names."),
    "db": ("certkeeper.cli.db", "db", "Database migrations: upgrade, current, downgrade."),
    "keys": ("certkeeper.cli.db", "keys", "Secrets at rest: rotate the encryption key."),
    "dns": ("certkeeper.cli.dns", "dns", "dns-01: test the setup (--dry-run shows it), register at acme-dns."),
    "completion": ("certkeeper.cli.completion", "completion", "Shell completion for bash, zsh, fish, PowerShell."),
    "monitoring": ("certkeeper.cli.monitoring", "monitoring", "Prometheus alerting rules and a Grafana dashboard."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (module, _, _) in COMMANDS.items() if importlib.util.find_spec(module)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None or importlib.util.find_spec(entry[0]) is None:
            return None
        module = importlib.import_module(entry[0])
        command: click.Command = getattr(module, entry[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Config file (default: $CERTKEEPER_CONFIG, then the platform config folder).")
@click.option("--debug", is_flag=True, help="Verbose logs and tracebacks on errors.")
@click.option("-v", "--verbose", is_flag=True, help="Log lifecycle steps to stderr.")
@click.version_option(package_name="certkeeper")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, debug: bool, verbose: bool) -> None:
    """certkeeper keeps Exchange Outlook Anywhere certificates alive: issue, store, bind, prove, renew."""
    ctx.obj = {"config_path": config_path, "debug": debug}
    from certkeeper.logs import setup_logging

    # without -v only errors are logged: every failure reaches the user once, as the command's own
    # "error:" line, never also as a warning printed over a progress line
    setup_logging(logging.DEBUG if debug else logging.INFO if verbose else logging.ERROR)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; certkeeper errors print one line and exit 1 (a traceback only with --debug)."""
    from certkeeper.errors import CertkeeperError

    args = sys.argv[1:] if argv is None else argv
    try:
        code = cli.main(args=args, prog_name="certkeeper", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except CertkeeperError as exc:
        if "--debug" in args or os.environ.get("CERTKEEPER_DEBUG"):
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: one line, the traceback only with --debug
        if "--debug" in args or os.environ.get("CERTKEEPER_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        click.echo(f"error: unexpected {type(exc).__name__}: {first} (a bug in certkeeper: run the command again "
                   "with --debug for the traceback and report it)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


