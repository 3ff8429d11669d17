"""The job store's tables and database engine: SQLite by default, Postgres by URL (SQLAlchemy Core).

A store written by an older version is brought up to date in place: new columns are nullable
and added by ``create_or_upgrade``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    text,
)

metadata = MetaData()

jobs_table = Table(
    "jobs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), unique=True, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("request", JSON, nullable=False),
    Column("progress", JSON, nullable=False),
    Column("result", JSON, nullable=False),
    Column("error", JSON, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("worker_id", String(200), nullable=True),
    Column("resumes", Integer, nullable=True),  # nullable: added in place to stores of older versions
    Column("heartbeat_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

events_table = Table(
    "job_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("type", String(16), nullable=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=True),
    Column("progress", JSON, nullable=True),
    Column("cer", JSON, nullable=True),
    Column("message", Text, nullable=False, default=""),
    Index("ix_job_events_job_seq", "job_id", "seq"),
)


def now() -> datetime:
    return datetime.now(timezone.utc)


def aware_utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone=True columns; all ours are UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the API read while the worker writes; busy_timeout waits out the other process's lock.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def create_or_upgrade(engine: Engine) -> None:
    """Create the tables, and add the columns a store written by an older version lacks."""
    metadata.create_all(engine)
    existing = inspect(engine)
    for table in metadata.sorted_tables:
        have = {c["name"] for c in existing.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if not column.nullable:
                raise RuntimeError(f"job store table {table.name} lacks the required column {column.name}")
            kind = column.type.compile(dialect=engine.dialect)
            with engine.begin() as conn:
                conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
