"""Exchange versions and what PowerShell each one runs on."""

from __future__ import annotations

from enum import StrEnum


class ExchangeVersion(StrEnum):
    """Exchange major versions; 2016, 2019 and SE share one cmdlet surface for certificates."""

    EX2010 = "2010"
    EX2013 = "2013"
    EX2016 = "2016"
    EX2019 = "2019"
    SE = "se"

    @property
    def is_2013_or_later(self) -> bool:
        return self is not ExchangeVersion.EX2010

    @property
    def is_2016_or_later(self) -> bool:
        return self not in (ExchangeVersion.EX2010, ExchangeVersion.EX2013)

    @property
    def powershell(self) -> str:
        """The oldest Windows PowerShell the version's supported Windows Server ships.

        2010: Windows Server 2008 R2, PowerShell 2.0 (WMF 3.0 was advised against; WMF 4.0 only
        from 2010 SP3 RU5). 2013/2016: Windows Server 2012 ships 3.0. 2019/SE: Windows Server
        2019+, 5.1.
        """
        return {"2010": "2.0", "2013": "3.0", "2016": "3.0", "2019": "5.1", "se": "5.1"}[self.value]
