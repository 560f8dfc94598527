"""Benchmarks: run on demand with `python -m pytest tests/perf -s -p no:cacheprovider`.

They print their figures and compare them with the targets; the normal suite never collects them
(norecursedirs in pyproject.toml) and never times anything.
"""
