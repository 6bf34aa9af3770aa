"""Canaries: an observation text and a photo carry unique marker strings through the whole API
(create, edit, a refused edit, upload, reads). Afterwards the markers appear 0 times in the
database files (main file and WAL, or every table on PostgreSQL), the blob store, the keystore and
the captured logs. Control markers stored in plaintext prove that each scan would find them."""

from __future__ import annotations

import io
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import ExifTags, Image
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from kita.db import Base, Database
from kita.models.documentation import ConsentPurpose
from kita.models.organisation import Group
from tests.conftest import PG_URL
from tests.integration.test_documentation_api import Api, body
from tests.unit.test_documentation import build_world, consent_to


def marked_jpeg(marker: str) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.ImageDescription] = marker
    exif[ExifTags.Base.Artist] = marker
    exif[ExifTags.IFD.GPSInfo] = {ExifTags.GPS.GPSLatitudeRef: "N"}
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), "green").save(
        buffer, "JPEG", exif=exif.tobytes(), comment=marker.encode()
    )
    return buffer.getvalue()


def files_containing(root: Path, needle: bytes) -> list[str]:
    """Every file below ``root`` whose bytes contain ``needle``."""
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and needle in path.read_bytes()
    )


def postgres_rows_containing(database: Database, needle: bytes) -> list[str]:
    """Tables with a row whose text or bytes contain ``needle`` (PostgreSQL keeps its files on
    the server, so the rows are searched instead)."""
    found = []
    with database.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    raw = (
                        bytes(value)
                        if isinstance(value, bytes | memoryview)
                        else str(value).encode()
                    )
                    if needle in raw:
                        found.append(table.name)
        # Also whatever is not mapped (alembic_version and anything a migration added).
        names = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        ).scalars()
        for name in set(names) - {t.name for t in Base.metadata.sorted_tables}:
            dump = str(conn.execute(text(f'SELECT * FROM "{name}"')).all()).encode()  # noqa: S608
            if needle in dump:
                found.append(name)
    return sorted(set(found))


def test_markers_never_reach_storage_or_logs(
    app: Flask,
    client: FlaskClient,
    login: Any,
    db: Session,
    database: Database,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    text_marker = f"CANARY-TEXT-{uuid.uuid4().hex}"
    # Short: Pillow's debug log prints EXIF strings up to 32 bytes in full.
    photo_marker = f"PH{uuid.uuid4().hex[:14]}"
    control = f"CONTROL-{uuid.uuid4().hex}"
    # Made before logging is turned up: only what the app logs is searched.
    photo = marked_jpeg(photo_marker)
    caplog.set_level(logging.DEBUG)
    w = build_world(db)
    consent_to(db, w, ConsentPurpose.DOCUMENTATION, ConsentPurpose.PHOTOS_IN_DOCUMENTATION)
    # Controls: plaintext in the database and in the log, which the scans must find.
    db.add(Group(id=uuid.uuid4(), kita_id=w.kita.id, name=control))
    db.commit()
    logging.getLogger("kita.canary").info("control %s", control)

    api = Api(client, login).as_user(w.educator)
    entry_id = uuid.uuid4()
    created = api.put(
        entry_id, body(w.child.id, title=f"Titel {text_marker}", text=f"Beobachtung {text_marker}")
    )
    assert created.status_code == 201
    edited = api.put(
        entry_id,
        body(
            w.child.id,
            title=f"Titel {text_marker}",
            text=f"Zweite Fassung {text_marker}",
            base_version=1,
        ),
    )
    assert edited.status_code == 200
    refused = api.put(entry_id, body(w.child.id, text=f"{text_marker} stale", base_version=1))
    assert refused.status_code == 409
    invalid = api.put(uuid.uuid4(), body(w.child.id, title=text_marker * 20))
    assert invalid.status_code == 422
    assert text_marker not in refused.get_data(as_text=True) + invalid.get_data(as_text=True)

    assert photo.count(photo_marker.encode()) >= 2
    photo_id = uuid.uuid4()
    assert api.upload(entry_id, photo, photo_id).status_code == 201
    read = api.get(f"/observations/{entry_id}")
    assert read.json["text"] == f"Zweite Fassung {text_marker}"
    served = api.get(f"/photos/{photo_id}")
    assert served.status_code == 200 and photo_marker.encode() not in served.data
    assert api.get(f"/children/{w.child.id}/timeline").json["total"] == 1

    # The keystore and the blob store exist and hold something; the instance has its files.
    instance = Path(app.extensions["kita"].config.instance_path)
    assert (instance / "keystore.sqlite3").is_file()
    assert any((instance / "blobs").rglob("*"))

    needles = {"text": text_marker.encode(), "photo": photo_marker.encode()}
    if PG_URL:
        assert postgres_rows_containing(database, control.encode()) == ["groups"]
        for needle in needles.values():
            assert postgres_rows_containing(database, needle) == []
        # The instance folder (keystore, blobs) is local on every engine.
        search_root = instance
    else:
        search_root = tmp_path
        assert (tmp_path / "kita.sqlite3-wal").is_file()
        assert files_containing(tmp_path, control.encode())
    for needle in needles.values():
        assert files_containing(search_root, needle) == []

    logged = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    assert control in logged
    for marker in (text_marker, photo_marker):
        assert marker not in logged and marker not in caplog.text

    # After the engine is closed (the WAL checkpointed into the main file) still nothing.
    db.close()
    database.dispose()
    app.extensions["kita"].keys.keystore.close()
    for needle in needles.values():
        assert files_containing(search_root, needle) == []
