"""Migrations: head matches the models, every revision goes up and down, and the app refuses an
unmigrated database with a message saying what to run."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from kita import create_app, migrations
from kita.config import ConfigError, KitaConfig
from kita.db import Base
from tests.conftest import PG_URL, TEST_SECRET, reset_postgres


def _fresh_url(tmp_path: Path, database_url: str) -> str:
    if PG_URL:
        return database_url
    return f"sqlite:///{tmp_path / 'fresh.sqlite3'}"


def test_head_matches_models(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_every_revision_up_and_down(tmp_path: Path, database_url: str) -> None:
    url = _fresh_url(tmp_path, database_url)
    if PG_URL:
        migrations.downgrade(url, "base")
    script = ScriptDirectory.from_config(migrations.alembic_config(url))
    revisions = list(reversed(list(script.walk_revisions())))
    assert revisions, "no migrations found"
    for revision in revisions:
        migrations.upgrade(url, revision.revision)
        migrations.downgrade(url, revision.down_revision or "base")
        migrations.upgrade(url, revision.revision)
    migrations.downgrade(url, "base")
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    migrations.upgrade(url)
    if PG_URL:
        reset_postgres(url)


def test_app_refuses_unmigrated_database(tmp_path: Path) -> None:
    config = KitaConfig(
        instance_path=tmp_path,
        secret_key=TEST_SECRET,
        database_url=f"sqlite:///{tmp_path / 'empty.sqlite3'}",
        testing=True,
        password_hashing="test",
    )
    with pytest.raises(ConfigError, match="kita init"):
        create_app(config)
