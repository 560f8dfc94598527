"""Pure lifecycle decisions: functions of stored facts and ``now``; no clock, no I/O, no store.

- :mod:`.renewal`: when a revision should be renewed (ARI, ``renew_before``, 1/3 or 1/2 of the
  lifetime), computed once per revision and stored.
- :mod:`.backoff`: when to try again after a failure (1 min, 10 min, 100 min, then daily).
- :mod:`.checks`: ``should_issue`` (why issue) and ``may_attempt`` (what blocks an attempt).
- :mod:`.health`: the derived health of a certificate, with its reason.
- :mod:`.alerts`: the "expiring" alert thresholds and which have been crossed.
"""
