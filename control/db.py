"""Connecting to the control-plane database and bringing its schema up to date."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from riverbed.core.settings import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x52495645  # "RIVE": the advisory lock Riverbed's migrations hold


#: What people paste as DATABASE_URL (libpq's, Heroku's, SQLAlchemy's default driver) means
#: PostgreSQL through psycopg 3, the driver Riverbed ships.
POSTGRES_SCHEMES = ("postgres://", "postgresql://", "postgresql+psycopg2://")


def database_url(data_dir: Path, url: str | None) -> str:
    """``url`` (``DATABASE_URL``) or SQLite in the data dir: zero setup by default."""
    if url:
        for scheme in POSTGRES_SCHEMES:
            if url.startswith(scheme):
                return "postgresql+psycopg://" + url[len(scheme) :]
        return url
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(data_dir / 'control.db').resolve()}"


def connect(url: str) -> Engine:
    # pool_pre_ping: a server restarted under a long-running API costs one reconnect, not an
    # error per pooled connection.
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        # SQLite leaves foreign keys off unless asked, per connection; WAL lets the API read
        # while the CLI writes.
        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

    return engine


def migrate(engine: Engine) -> None:
    """Apply every migration not applied yet (idempotent; run at start-up)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # API replicas starting together: one migrates, the others wait and find it done.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def open_store(url: str) -> sessionmaker[Session]:
    """Connect, migrate, and hand out sessions."""
    engine = connect(url)
    migrate(engine)
    return sessionmaker(engine, expire_on_commit=False)


def control_sessions(settings: Settings) -> sessionmaker[Session]:
    """The control plane of ``settings``: ``DATABASE_URL``, or SQLite in the data dir."""
    return open_store(database_url(settings.data_dir, settings.database_url))
