"""The control plane's store: who may do what (API keys now; users, sessions, and the alert
rules, channels and subscriptions next), in SQLite in the data dir or in PostgreSQL.

Relational data with relational needs (uniqueness, revocation, joins), so it is not kept in
Redis. SQLAlchemy 2 maps it; Alembic migrates it at start-up, so an upgrade needs no step of
its own. This package sits beside ``schemas`` in the contracts layer: the API and the notifier
use it, and it imports only ``riverbed.core``.
"""
