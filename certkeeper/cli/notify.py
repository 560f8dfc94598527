"""``certkeeper notify test [NAME]``: send a test alert straight to the configured notifiers.

The test bypasses the outbox (nothing is queued or retried) and prints one line per notifier:
``ok`` or ``failed: <reason>``. Reasons are the notifiers' own messages, which never contain a
webhook URL or password, and say "could not reach" for refused, unreachable and timed-out
connections alike, so the command cannot be used to map which internal ports are open
(OWASP SSRF Prevention Cheat Sheet, https://cheatsheetseries.owasp.org/cheatsheets/Server_Side_Request_Forgery_Prevention_Cheat_Sheet.html);
private and loopback targets are refused unless allow-listed.
"""

from __future__ import annotations

import logging
import socket

import click

from certkeeper.cli.common import open_service

log = logging.getLogger(__name__)


@click.group()
def notify() -> None:
    """Alerts: send a test message."""


@notify.command("test")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print [{notifier, type, ok, error}] as JSON.")
@click.pass_context
def test(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Send a TEST alert to notifier NAME, or to every configured notifier.

    Exits 1 when any notifier failed.
    """
    from certkeeper.errors import CertkeeperError, ConfigError, NotFound, NotifyError
    from certkeeper.model import Event, EventKind
    from certkeeper.notifiers import load_notifier

    service = open_service(ctx, sync=False)
    tables = service.config.settings.notifiers
    if not tables:
        raise ConfigError("no notifiers are configured (add a [notifiers.NAME] table to the config)")
    if name is not None and name not in tables:
        raise NotFound(f"no notifier named {name!r} (configured: {', '.join(sorted(tables))})")
    names = [name] if name is not None else sorted(tables)
    host = socket.gethostname()
    failed = 0
    results: list[dict[str, object]] = []

    def report(notifier_name: str, kind: str, error: str | None) -> None:
        results.append({"notifier": notifier_name, "type": kind, "ok": error is None, "error": error})
        if not as_json:
            click.echo(f"{notifier_name} ({kind}): " + ("ok" if error is None else f"failed: {error}"))

    for notifier_name in names:
        table = tables[notifier_name]
        event = Event(
            kind=EventKind.TEST,
            occurred_at=service.clock.now(),
            message=f"A test alert from certkeeper on {host} through notifier {notifier_name!r}. "
            "If you can read this, alerts reach you.",
        )
        try:
            cls = load_notifier(table.type)
            notifier = cls.from_options(notifier_name, table.options(), service.context.plugin_context(
                f"notifier:{notifier_name}"))
            notifier.notify(event)
        except (NotifyError, ConfigError) as exc:
            failed += 1
            report(notifier_name, table.type, str(exc))
        except CertkeeperError as exc:
            failed += 1
            report(notifier_name, table.type, str(exc))
        except Exception as exc:  # a bug in a notifier: say which, keep its text out (it could hold a URL)
            failed += 1
            log.debug("notifier %r raised", notifier_name, exc_info=True)
            report(notifier_name, table.type, f"unexpected {type(exc).__name__}")
        else:
            report(notifier_name, table.type, None)
    if as_json:
        from certkeeper.cli.common import print_json

        print_json(results)
    if failed:
        raise NotifyError(f"{failed} of {len(names)} notifier(s) failed")
