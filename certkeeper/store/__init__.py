"""The certificate store: tables, migrations, and one module per aggregate, in SQLAlchemy Core.

- :mod:`.unit`: :class:`~.unit.Store` (engine, sealer, clock) and its unit of work;
- :mod:`.certificates`, :mod:`.revisions`, :mod:`.deployments`, :mod:`.leases`, :mod:`.secrets`,
  :mod:`.events`, :mod:`.alerts`: functions over the caller's session, returning frozen views
  and changing rows with explicit statements;
- :mod:`.facts`: rows turned into the facts :mod:`certkeeper.lifecycle` decides on;
- :mod:`.db` and :mod:`.tables`: engines, migrations and the tables.

No SQL is written outside this package. There is no ORM: importing and configuring it cost a
short command more than all of its statements (README, "Performance").
"""
