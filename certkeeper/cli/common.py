"""What every command shares: opening the service, printing for humans and for --json."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

    from certkeeper.config import Config
    from certkeeper.service import Service


def load_config(ctx: click.Context) -> Config:
    from certkeeper import config

    obj = ctx.find_root().obj or {}
    return config.load(obj.get("config_path"))


def open_service(
    ctx: click.Context, *, create: bool = True, sync: bool = True, read_only: bool = False
) -> Service:
    """Load the config, open (and create) the store, and put configured certificates under management.

    ``read_only`` commands (list, show, status, export) write nothing unless the config changed,
    and still answer when the store's disk is full or read-only.
    """
    from certkeeper.service import Service

    service = Service.open(load_config(ctx), create=create, read_only=read_only)
    if sync:
        service.specs.sync_config()
    return service


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # piped output (grep, a log file) gets wide lines instead of 80-column wrapping
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def print_json(data: Any) -> None:
    # indented for a person at a terminal; compact (C encoder, much faster) for scripts and pipes
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(data, default=_default, indent=indent) + "\n")


def print_table(headers: list[str], rows: list[list[str]], *, styles: dict[int, dict[str, str]] | None = None) -> None:
    """Aligned plain-text columns (fast for 10,000 rows, grep-friendly); colour only on a terminal.

    ``styles`` maps a column index to {cell value: click colour}.
    """
    widths = [len(h) for h in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    colour = sys.stdout.isatty()
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for row in rows:
        cells = []
        for index, cell in enumerate(row):
            text = cell.ljust(widths[index])
            fg = (styles or {}).get(index, {}).get(cell)
            cells.append(click.style(text, fg=fg) if colour and fg else text)
        lines.append("  ".join(cells).rstrip())
    sys.stdout.write("\n".join(lines) + "\n")


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    # by hand: strftime would cost a third of `list` over 10,000 certificates
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d} {value.hour:02d}:{value.minute:02d} UTC"


def days_left(not_after: datetime | None, now: datetime) -> float | None:
    if not_after is None:
        return None
    return round((not_after - now).total_seconds() / 86400, 1)


def complete_certificate_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of certificate ids: the config's [[certificates]] and the store's ids.

    Reads the store directly (one SELECT, no key file, no migration, nothing created) and fails
    silently: a completion must never print an error or hang the shell.
    """
    from click.shell_completion import CompletionItem

    ids: set[str] = set()
    try:
        config = load_config(ctx)
        ids.update(cert.id for cert in config.settings.certificates)
        if config.settings.store.url or (config.data_dir / "certkeeper.db").is_file():
            from certkeeper.store.db import quick_certificate_ids

            ids.update(quick_certificate_ids(config.store_url))
    except Exception:  # noqa: BLE001, S110 - completion fails silently by design
        pass
    return [CompletionItem(cert_id) for cert_id in sorted(ids) if cert_id.startswith(incomplete)]
