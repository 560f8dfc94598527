"""The certificate store: schema, migrations, and one module per aggregate.

- :mod:`.unit`: :class:`~.unit.Store` (sessions, sealer, clock) and its unit of work;
- :mod:`.certificates`, :mod:`.revisions`, :mod:`.deployments`, :mod:`.leases`, :mod:`.secrets`,
  :mod:`.events`, :mod:`.alerts`: functions over the caller's session;
- :mod:`.facts`: rows turned into the facts :mod:`certkeeper.lifecycle` decides on;
- :mod:`.db` and :mod:`.schema`: engines, migrations and the tables.

No SQL is written outside this package.
"""
