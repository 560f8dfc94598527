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


def open_service(ctx: click.Context, *, create: bool = True, sync: bool = True) -> Service:
    """Load the config, open (and create) the store, and put configured certificates under management."""
    from certkeeper.service import Service

    service = Service.open(load_config(ctx), create=create)
    if sync:
        service.sync_config()
    return service


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=_default, indent=2) + "\n")


def fmt_time(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def days_left(not_after: datetime | None, now: datetime) -> float | None:
    if not_after is None:
        return None
    return round((not_after - now).total_seconds() / 86400, 1)
