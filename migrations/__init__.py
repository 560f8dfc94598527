"""Alembic migrations for the certkeeper store; shipped inside the wheel."""
