"""Crypto-shredding end to end: a backup of the data database made before shredding cannot be
read for the shredded child (and still can for every other child); canaries of the shredded
child are gone from the database files, the blob store and the keystore; a process killed
between the steps is finished by the next run; keystore backups are what erasure waits for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from kita.blobs import BlobStore
from kita.cli import main
from kita.config import KitaConfig
from kita.crypto import (
    KeyKind,
    KeyNotFoundError,
    KeyringError,
    KeyService,
    SqliteKeystore,
    ensure_master_key,
)
from kita.crypto.keyring import Keyring
from kita.db import Database
from kita.models.documentation import DocumentationEntry, DocumentationPhoto, DocumentationRevision
from kita.models.organisation import Child
from kita.services import lifecycle
from kita.services.documentation import decrypt_for_child
from tests.conftest import MASTER_KEY, PG_URL
from tests.integration.test_canaries import files_containing, postgres_rows_containing
from tests.unit.test_documentation import World, build_world
from tests.unit.test_lifecycle import DAYS, NOW, TODAY, document, has_key, rows_of_child

LEFT = TODAY - timedelta(days=DAYS)


@dataclass(frozen=True)
class Sealed:
    """One ciphertext as a backup holds it, with what its associated data names."""

    child_id: uuid.UUID
    kita_id: uuid.UUID
    table: str
    row_id: uuid.UUID
    ciphertext: bytes
    key_version: int


def sealed_rows(db: Session, blobs: BlobStore) -> list[Sealed]:
    """Every documentation ciphertext: entries, their history and their photos."""
    found = [
        Sealed(e.child_id, e.kita_id, "documentation_entries", e.id, e.content_ct, e.key_version)
        for e in db.scalars(select(DocumentationEntry))
    ]
    for revision, entry in db.execute(
        select(DocumentationRevision, DocumentationEntry).join(
            DocumentationEntry, DocumentationRevision.entry_id == DocumentationEntry.id
        )
    ):
        found.append(
            Sealed(
                entry.child_id,
                entry.kita_id,
                "documentation_revisions",
                revision.id,
                revision.content_ct,
                revision.key_version,
            )
        )
    for photo in db.scalars(select(DocumentationPhoto)):
        found.append(
            Sealed(
                photo.child_id,
                photo.kita_id,
                "documentation_photos",
                photo.id,
                blobs.get(photo.blob_id),
                photo.key_version,
            )
        )
    return found


def opens(keys: KeyService, sealed: Sealed) -> bool:
    """True when the ciphertext decrypts; False when the child's key does not exist."""
    keys.clear_cache()
    try:
        decrypt_for_child(
            keys,
            child_id=sealed.child_id,
            kita_id=sealed.kita_id,
            table=sealed.table,
            column="blob" if sealed.table == "documentation_photos" else "content",
            row_id=sealed.row_id,
            ciphertext=sealed.ciphertext,
            key_version=sealed.key_version,
        )
    except KeyNotFoundError:
        return False
    return True


@pytest.fixture
def keys(app: Flask) -> KeyService:
    return app.extensions["kita"].keys  # type: ignore[no-any-return]


@pytest.fixture
def blobs(config: KitaConfig) -> BlobStore:
    return BlobStore(config.blob_dir)


@pytest.fixture
def world(db: Session, keys: KeyService, blobs: BlobStore) -> World:
    """Two children with consents, shared and internal entries and a photo each; the first
    one left a deadline ago and is due."""
    w = build_world(db)
    canary = uuid.uuid4().hex
    w.child.first_name, w.child.last_name = f"Canary{canary}", f"Shredded{canary}"
    w.other_child.first_name = f"Control{uuid.uuid4().hex}"
    db.commit()
    document(db, keys, blobs, w.educator, w.child, w.parent)
    document(db, keys, blobs, w.other_educator, w.other_child, w.other_parent)
    w.child.leave_date = LEFT
    db.commit()
    return w


def shred(db: Session, database: Database, keys: KeyService, blobs: BlobStore) -> Any:
    db.commit()
    return lifecycle.run_retention(database, keys=keys, blobs=blobs, now=NOW, days_after_leave=DAYS)


def copy_sqlite(url: str, target: Path) -> str:
    """A file-level copy of the SQLite database (main file and WAL), as a backup tool makes."""
    source = Path(url.removeprefix("sqlite:///"))
    target.mkdir()
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", target / f"backup.sqlite3{suffix}")
    return f"sqlite:///{target / 'backup.sqlite3'}"


# --- a backup made before shredding ----------------------------------------------------------


def test_a_backup_made_before_shredding_is_unreadable_for_that_child_only(
    db: Session,
    database: Database,
    keys: KeyService,
    blobs: BlobStore,
    world: World,
    tmp_path: Path,
) -> None:
    w = world
    shredded, kept = w.child.id, w.other_child.id
    blob_backup = tmp_path / "blob-backup"
    shutil.copytree(blobs.root, blob_backup)
    if PG_URL:
        # PostgreSQL keeps its files on the server: the backup is the rows as a dump has them.
        backup = sealed_rows(db, BlobStore(blob_backup))
    else:
        backup_url = copy_sqlite(database.url, tmp_path / "backup")

    report = shred(db, database, keys, blobs)
    assert report.shredded == [shredded]

    if not PG_URL:
        engine = create_engine(backup_url)
        with Session(engine) as copy:
            backup = sealed_rows(copy, BlobStore(blob_backup))
            assert copy.get(Child, shredded) is not None, "the backup still has the rows"
        engine.dispose()
    mine = [s for s in backup if s.child_id == shredded]
    others = [s for s in backup if s.child_id == kept]
    # 4 entries, 4 first revisions and 1 photo each.
    assert len(mine) == len(others) == 9
    assert [opens(keys, s) for s in mine] == [False] * 9
    assert [opens(keys, s) for s in others] == [True] * 9


# --- canaries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Canaries:
    """Byte strings only the shredded child has, in every place its data lived."""

    name: bytes
    entry: bytes
    photo: bytes
    key: bytes
    control_name: bytes
    control_key: bytes


def canaries(db: Session, keys: KeyService, blobs: BlobStore, w: World) -> Canaries:
    entry = db.scalars(
        select(DocumentationEntry.content_ct).where(DocumentationEntry.child_id == w.child.id)
    ).first()
    photo = db.scalars(
        select(DocumentationPhoto.blob_id).where(DocumentationPhoto.child_id == w.child.id)
    ).one()
    wrapped = keys.keystore.get(str(w.child.id), KeyKind.GENERAL.value)
    control = keys.keystore.get(str(w.other_child.id), KeyKind.GENERAL.value)
    assert entry is not None and wrapped is not None and control is not None
    # Slices from the middle: random ciphertext bytes no other file can hold by chance.
    return Canaries(
        name=w.child.first_name.encode(),
        entry=entry[30:62],
        photo=blobs.get(photo)[100:132],
        key=wrapped.wrapped[12:44],
        control_name=w.other_child.first_name.encode(),
        control_key=control.wrapped[12:44],
    )


def test_canaries_of_the_shredded_child_are_gone_from_every_file(
    db: Session,
    database: Database,
    keys: KeyService,
    blobs: BlobStore,
    config: KitaConfig,
    world: World,
    tmp_path: Path,
) -> None:
    marks = canaries(db, keys, blobs, world)
    keystore_files = config.instance_path
    data_files = tmp_path  # kita.sqlite3 and kita.sqlite3-wal (SQLite only)
    # Before: each scan finds what it looks for.
    assert files_containing(keystore_files, marks.key)
    assert files_containing(blobs.root, marks.photo)
    if not PG_URL:
        assert files_containing(data_files, marks.name)
        assert files_containing(data_files, marks.entry)

    report = shred(db, database, keys, blobs)
    assert report.shredded == [world.child.id] and report.purged
    db.close()

    for mark in (marks.name, marks.entry, marks.photo, marks.key):
        assert files_containing(blobs.root, mark) == []
        assert files_containing(keystore_files, mark) == []
    # The other child's key and name are still there: the scans would have found ours.
    assert files_containing(keystore_files, marks.control_key)
    if PG_URL:
        assert postgres_rows_containing(database, marks.name) == []
        assert postgres_rows_containing(database, marks.control_name) == ["children"]
        pytest.skip("PostgreSQL's files live on the server: the file scan is SQLite only")
    wal = Path(f"{database.url.removeprefix('sqlite:///')}-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the WAL was truncated"
    for mark in (marks.name, marks.entry, marks.photo, marks.key):
        assert files_containing(data_files, mark) == []
    assert files_containing(data_files, marks.control_name)


# --- a process killed between the steps ------------------------------------------------------

CRASHING_RUN = """
import os, sys
from datetime import datetime
from pathlib import Path
from kita.blobs import BlobStore
from kita.crypto import KeyService, SqliteKeystore
from kita.crypto.keyring import Keyring
from kita.db import Database
from kita.services import lifecycle

url, keys_dir, keystore, blob_dir, now, crash_at = sys.argv[1:]
blobs = BlobStore(Path(blob_dir))

def die(*args, **kwargs):
    os._exit(17)  # no cleanup, no rollback: as if the machine lost power

if crash_at == "after_keys":
    blobs.delete = die  # the keys are shredded, the rows and blobs are not
else:
    lifecycle.purge_deleted_rows = die  # committed, the files not yet purged
keys = KeyService(Keyring(Path(keys_dir), os.environ["KITA_MASTER_KEY"]), SqliteKeystore(keystore))
lifecycle.run_retention(
    Database(url), keys=keys, blobs=blobs, now=datetime.fromisoformat(now), days_after_leave=30
)
os._exit(0)
"""


@pytest.mark.parametrize("crash_at", ["after_keys", "after_commit"])
def test_a_process_killed_between_the_steps_is_finished_by_the_next_run(
    db: Session,
    database: Database,
    keys: KeyService,
    blobs: BlobStore,
    config: KitaConfig,
    world: World,
    tmp_path: Path,
    crash_at: str,
) -> None:
    w = world
    shredded = w.child.id
    marks = canaries(db, keys, blobs, w)
    db.commit()
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASHING_RUN,
            database.url,
            str(config.keys_dir),
            str(config.keystore_path),
            str(config.blob_dir),
            NOW.isoformat(),
            crash_at,
        ],
        env={**os.environ, "KITA_MASTER_KEY": MASTER_KEY, "PYTHONPATH": str(root)},
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 17, done.stderr[-2000:]
    assert not has_key(keys, shredded), "the keys went first"
    db.expire_all()
    left = rows_of_child(db, shredded)
    if crash_at == "after_keys":
        assert left["children"] == 1 and left["entries"] == 4, "the rows are the to-do marker"
        assert files_containing(blobs.root, marks.photo)
    else:
        assert set(left.values()) == {0}

    report = shred(db, database, keys, blobs)
    assert report.failed == [] and report.purged
    assert report.shredded == ([shredded] if crash_at == "after_keys" else [])
    db.expire_all()
    assert set(rows_of_child(db, shredded).values()) == {0}
    assert files_containing(blobs.root, marks.photo) == []
    assert rows_of_child(db, w.other_child.id)["entries"] == 4
    db.close()
    if not PG_URL:
        for mark in (marks.name, marks.entry):
            assert files_containing(tmp_path, mark) == []


# --- keystore backups ------------------------------------------------------------------------


def test_erasure_reaches_keystore_backups_when_they_expire_or_their_master_key_retires(
    db: Session, database: Database, blobs: BlobStore, tmp_path: Path
) -> None:
    """A keystore backup from before the shredding still holds the child's key: that is why
    keystore backups are kept briefly. Once the master key version that wrapped it is rotated
    away and retired, even that backup no longer opens the child's data."""
    keys_dir, store = tmp_path / "file-keys", tmp_path / "keystore.sqlite3"
    ensure_master_key(keys_dir)
    live_store = SqliteKeystore(store)
    live = KeyService(Keyring(keys_dir), live_store)
    w = build_world(db)
    document(db, live, blobs, w.educator, w.child, w.parent)
    document(db, live, blobs, w.other_educator, w.other_child, w.other_parent)
    w.child.leave_date = LEFT
    data_backup = sealed_rows(db, blobs)
    live_store.checkpoint()
    shutil.copyfile(store, tmp_path / "keystore-backup.sqlite3")
    mine = [s for s in data_backup if s.child_id == w.child.id]
    others = [s for s in data_backup if s.child_id == w.other_child.id]

    assert shred(db, database, live, blobs).shredded == [w.child.id]
    assert not any(opens(live, s) for s in mine)
    backup_store = SqliteKeystore(tmp_path / "keystore-backup.sqlite3")
    from_backup = KeyService(Keyring(keys_dir), backup_store)
    assert all(opens(from_backup, s) for s in mine), "the day's keystore backup still can"

    live.rotate()
    live.retire(1)
    assert all(opens(live, s) for s in others)
    from_backup = KeyService(Keyring(keys_dir), backup_store)
    for sealed in mine:
        with pytest.raises(KeyringError):
            opens(from_backup, sealed)
    backup_store.close()
    live_store.close()


# --- the command -----------------------------------------------------------------------------


def test_kita_retention_run_counts_with_dry_run_then_shreds(
    db: Session,
    database: Database,
    keys: KeyService,
    config: KitaConfig,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``kita retention run`` uses today's date: the world's child left long before that."""
    world.child.leave_date = date.today() - timedelta(days=400)
    db.commit()
    config.keys_dir.mkdir(exist_ok=True)
    for name, value in {
        "KITA_INSTANCE_PATH": str(config.instance_path),
        "KITA_SECRET_KEY": config.secret_key,
        "KITA_DATABASE_URL": database.url,
        "KITA_MASTER_KEY": MASTER_KEY,
    }.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    dry = runner.invoke(main, ["retention", "run", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "1 children (0 handed over, 1 past the 30-day deadline)" in dry.output
    assert "4 documentation entries and 1 photos" in dry.output
    assert "nothing was deleted" in dry.output
    db.expire_all()
    assert rows_of_child(db, world.child.id)["children"] == 1
    db.commit()
    done = runner.invoke(main, ["retention", "run"])
    assert done.exit_code == 0, done.output
    assert "Shredded 1 children: 1 data keys" in done.output
    assert world.child.first_name not in done.output
    assert not has_key(keys, world.child.id)


# --- conversations go with the child ---------------------------------------------------------

PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00"
    b"\x00\x00\x00IEND\xaeB`\x82"
)


def test_shredding_a_child_destroys_its_conversations_their_keys_and_attachments(
    db: Session, database: Database, keys: KeyService, blobs: BlobStore, world: World
) -> None:
    from kita.access import load_actor
    from kita.models.messaging import Attachment, Conversation, ConversationMessage, Team
    from kita.services import conversations
    from kita.services.translation import Translator

    started = {}
    for child, parent in ((world.child, world.parent), (world.other_child, world.other_parent)):
        result = conversations.start_conversation(
            db,
            actor=load_actor(db, parent),
            keys=keys,
            blobs=blobs,
            translator=Translator(db, None, use_memory=False),
            draft=conversations.ConversationDraft(
                child.id,
                Team.GROUP,
                "question",
                "Eine Frage",
                (conversations.Upload("bild.png", PNG_BYTES),),
            ),
            writer_locale="de",
            now=NOW - timedelta(days=1),
        )
        db.commit()
        started[child.id] = result.conversation.id
    blob_of = dict(
        db.execute(
            select(Conversation.child_id, Attachment.blob_id)
            .join(ConversationMessage, ConversationMessage.conversation_id == Conversation.id)
            .join(Attachment, Attachment.message_id == ConversationMessage.id)
        ).all()
    )

    def has_conversation_key(conversation_id: uuid.UUID) -> bool:
        keys.clear_cache()
        try:
            keys.data_key(conversation_id, KeyKind.CONVERSATION, create=False)
        except KeyNotFoundError:
            return False
        return True

    assert has_conversation_key(started[world.child.id])
    assert blobs.exists(blob_of[world.child.id])

    gone, kept = world.child.id, world.other_child.id
    report = shred(db, database, keys, blobs)
    assert report.shredded == [gone]

    db.expire_all()
    assert set(db.scalars(select(Conversation.id))) == {started[kept]}
    assert not has_conversation_key(started[gone])
    assert has_conversation_key(started[kept])
    assert not blobs.exists(blob_of[gone])
    assert blobs.exists(blob_of[kept])
