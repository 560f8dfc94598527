"""The ``exchange`` binder (binder.py), its PowerShell steps (scripts.py), what it reads back
(parse.py), hybrid mail flow (hybrid.py), ``plan --from-exchange`` (discovery.py) and ``doctor``
(doctor.py)."""

from __future__ import annotations

from certkeeper.binders.exchange.binder import ExchangeBinder, ExchangeServer

__all__ = ["ExchangeBinder", "ExchangeServer"]
