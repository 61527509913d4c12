"""Alembic migrations of the hub's schema, shipped with the hub so `cvflow-hub migrate` finds them."""
