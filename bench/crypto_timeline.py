"""What encryption costs when staff open a child's timeline.

- ``crypto_timeline``: seconds to load one child's 200 documentation entries decrypted, through
  the service's own read path (``decrypt_entries_for_export``: the ORM query with the entries'
  areas, the author names, the photo ids, then one AES-256-GCM decryption with bound associated
  data and a JSON parse per entry, into ``EntryView`` objects) with a warm key cache, as in a
  real request. Compared with ``plaintext``: the same 200 rows (same columns, same ids, the
  content as plaintext JSON) read from a bench-only table in the same temporary SQLite database
  and turned into the same ``EntryView`` objects by the same steps minus the decryption.
  Each side runs in a fresh session (no identity-map shortcut), interleaved, after a warm-up;
  the medians of the runs are reported. Target: ratio ≤ 1.3.
"""

from __future__ import annotations

import enum
import gc
import json
import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import JSON, Enum, ForeignKey, MetaData, Text, insert, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bench.registry import BenchError, RunContext, register
from bench.results import Figure, figure
from kita import migrations
from kita.access import load_actor
from kita.crypto import Keyring, KeyService, SqliteKeystore, ensure_master_key
from kita.db import Database, UTCDateTime
from kita.models.accounts import GroupAssignment, Membership, Role, User
from kita.models.documentation import (
    ConsentMethod,
    ConsentPurpose,
    Disposition,
    DocumentationEntry,
    EducationalArea,
    EntryKind,
    EntryStatus,
)
from kita.models.organisation import Child, Group, GuardianLink, Kita, Provider, Relation
from kita.services import consent, documentation
from kita.services.documentation import EntryView

NAME = "crypto_timeline"
ENTRIES = 200
RUNS = 9
SENTENCES = (
    "Sie hat heute im Garten einen Turm aus Holzklötzen gebaut und dabei laut gezählt.",
    "Er probierte verschiedene Formen aus, bis der Turm stabil stand, und erklärte es Mia.",
    "Beim Aufräumen sortierte sie die Klötze nach Farben und nach Größe.",
    "Im Morgenkreis erzählte er von seinem Wochenende bei den Großeltern.",
    "Die anderen Kinder hörten aufmerksam zu und stellten Fragen.",
    "Mit Ausdauer und Freude blieb sie über eine halbe Stunde bei ihrem Vorhaben.",
)


class PlainBase(DeclarativeBase):
    """Bench-only tables, kept out of the app's metadata."""

    metadata = MetaData()
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012 (as kita.db.Base)


def _enum(enum_cls: type[enum.StrEnum], length: int = 32) -> Enum:
    # The column type of kita.models.documentation: values stored as strings, loaded as enums.
    return Enum(
        enum_cls, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e]
    )


class PlainEntry(PlainBase):
    """``documentation_entries`` with its content as plaintext JSON instead of a ciphertext:
    the same column types, so loading differs only by the decryption."""

    __tablename__ = "bench_plain_entries"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    child_id: Mapped[uuid.UUID] = mapped_column(index=True)
    kita_id: Mapped[uuid.UUID]
    author_id: Mapped[uuid.UUID]
    kind: Mapped[EntryKind] = mapped_column(_enum(EntryKind))
    status: Mapped[EntryStatus] = mapped_column(_enum(EntryStatus, 16))
    observed_on: Mapped[date]
    dispositions: Mapped[list[str]] = mapped_column(JSON, default=list)
    template_id: Mapped[uuid.UUID | None]
    content: Mapped[str] = mapped_column(Text)
    key_version: Mapped[int]
    version: Mapped[int]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    shared_with_family_at: Mapped[datetime | None]
    shared_by_id: Mapped[uuid.UUID | None]

    area_rows: Mapped[list[PlainEntryArea]] = relationship(
        lazy="selectin", order_by="PlainEntryArea.area"
    )

    @property
    def areas(self) -> list[EducationalArea]:
        # As DocumentationEntry.areas.
        return sorted((row.area for row in self.area_rows), key=list(EducationalArea).index)


class PlainEntryArea(PlainBase):
    __tablename__ = "bench_plain_entry_areas"

    entry_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("bench_plain_entries.id"), primary_key=True
    )
    area: Mapped[EducationalArea] = mapped_column(
        _enum(EducationalArea), primary_key=True, index=True
    )


def _build(ctx: RunContext) -> tuple[Database, KeyService, uuid.UUID]:
    """A migrated SQLite database with one child and 200 encrypted entries written through
    ``save_entry``, and the bench table holding the same entries in plaintext."""
    folder = ctx.workdir / NAME
    folder.mkdir()
    url = f"sqlite:///{folder / 'kita.sqlite3'}"
    migrations.upgrade(url)
    database = Database(url)
    ctx.stack.callback(database.dispose)
    ensure_master_key(folder / "keys")
    keystore = SqliteKeystore(folder / "keystore.sqlite3")
    ctx.stack.callback(keystore.close)
    keys = KeyService(Keyring(folder / "keys"), keystore)
    PlainBase.metadata.create_all(database.engine)
    rng = random.Random(2026)
    today = datetime.now(UTC).date()
    with database.transaction() as db:
        provider = Provider(id=uuid.uuid4(), name="Bench-Träger")
        db.add(provider)
        db.flush()
        kita = Kita(id=uuid.uuid4(), provider_id=provider.id, name="Kita Bench")
        db.add(kita)
        db.flush()
        group = Group(id=uuid.uuid4(), kita_id=kita.id, name="Raupen")
        child = Child(
            id=uuid.uuid4(), kita_id=kita.id, group_id=group.id, first_name="E", last_name="Y"
        )
        educator = User(id=uuid.uuid4(), email="e@bench", display_name="Frau S", password_hash="x")
        parent = User(id=uuid.uuid4(), email="p@bench", display_name="Familie Y", password_hash="x")
        db.add_all([group, child, educator, parent])
        db.flush()
        db.add_all(
            [
                Membership(user_id=educator.id, kita_id=kita.id, role=Role.EDUCATOR),
                GroupAssignment(user_id=educator.id, group_id=group.id),
                GuardianLink(child_id=child.id, user_id=parent.id, relation=Relation.MOTHER),
            ]
        )
        db.flush()
        consent.give_consent(
            db,
            actor=load_actor(db, parent),
            child=child,
            purpose=ConsentPurpose.DOCUMENTATION,
            method=ConsentMethod.APP,
        )
        staff = load_actor(db, educator)
        areas, dispositions = list(EducationalArea), list(Disposition)
        for number in range(ENTRIES):
            documentation.save_entry(
                db,
                actor=staff,
                keys=keys,
                entry_id=uuid.uuid4(),
                data=documentation.EntryInput(
                    child_id=child.id,
                    kind=rng.choice(list(EntryKind)).value,
                    status=EntryStatus.FINAL.value,
                    title=f"Beobachtung {number + 1}",
                    # About 500 to 1,200 characters, as educators write them.
                    text=" ".join(rng.choice(SENTENCES) for _ in range(rng.randint(6, 15))),
                    areas=[a.value for a in rng.sample(areas, rng.randint(1, 3))],
                    dispositions=[d.value for d in rng.sample(dispositions, rng.randint(0, 2))],
                    observed_on=today - timedelta(days=rng.randint(0, 700)),
                ),
            )
        child_id = child.id
    # The plaintext twin: the same rows, read back decrypted once to copy the content.
    with database.session() as db:
        child_row = db.get(Child, child_id)
        assert child_row is not None
        views = documentation.decrypt_entries_for_export(db, keys=keys, child=child_row)
        rows = {row.id: row for row in db.scalars(select(DocumentationEntry))}
    with database.transaction() as db:
        db.execute(
            insert(PlainEntry),
            [
                {
                    "id": view.id,
                    "child_id": view.child_id,
                    "kita_id": view.kita_id,
                    "author_id": view.author_id,
                    "kind": view.kind,
                    "status": view.status,
                    "observed_on": view.observed_on,
                    "dispositions": [d.value for d in view.dispositions],
                    "template_id": view.template_id,
                    "content": json.dumps(
                        {
                            "title": view.title,
                            "text": view.text,
                            "template_values": view.template_values,
                        },
                        ensure_ascii=False,
                        separators=(",", ":"),
                    ),
                    "key_version": rows[view.id].key_version,
                    "version": view.version,
                    "created_at": view.created_at,
                    "updated_at": view.updated_at,
                    "shared_with_family_at": view.shared_with_family_at,
                    "shared_by_id": None,
                }
                for view in views
            ],
        )
        db.execute(
            insert(PlainEntryArea),
            [{"entry_id": v.id, "area": a} for v in views for a in v.areas],
        )
    with database.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return database, keys, child_id


def load_encrypted(database: Database, keys: KeyService, child_id: uuid.UUID) -> list[EntryView]:
    """The service's read path: query, areas, names, photo ids, decrypt, parse."""
    with database.session() as db:
        child = db.get(Child, child_id)
        assert child is not None
        return documentation.decrypt_entries_for_export(db, keys=keys, child=child)


def _plain_content(entry: PlainEntry) -> documentation._Content:
    """As ``documentation._stored_content``, with ``json.loads`` instead of decrypting."""
    secret = json.loads(entry.content)
    return documentation._Content(
        kind=entry.kind,
        status=entry.status,
        title=secret["title"],
        text=secret["text"],
        areas=tuple(entry.areas),
        dispositions=tuple(Disposition(d) for d in entry.dispositions),
        template_id=entry.template_id,
        template_values=dict(secret["template_values"]),
        observed_on=entry.observed_on,
    )


def load_plaintext(database: Database, child_id: uuid.UUID) -> list[EntryView]:
    """The same steps on the plaintext table (``decrypt_entries_for_export`` and
    ``documentation._views`` line by line), without the decryption."""
    with database.session() as db:
        child = db.get(Child, child_id)
        assert child is not None
        entries = db.scalars(
            select(PlainEntry)
            .where(PlainEntry.child_id == child.id)
            .order_by(PlainEntry.observed_on, PlainEntry.created_at, PlainEntry.id)
        ).all()
        names = documentation._names(db, {e.author_id for e in entries})
        photos = documentation._photo_ids(db, [e.id for e in entries])
        views = []
        for entry in entries:
            content = _plain_content(entry)
            views.append(
                EntryView(
                    id=entry.id,
                    child_id=entry.child_id,
                    kita_id=entry.kita_id,
                    author_id=entry.author_id,
                    author_name=names.get(entry.author_id, ""),
                    kind=content.kind,
                    status=content.status,
                    title=content.title,
                    text=content.text,
                    areas=content.areas,
                    dispositions=content.dispositions,
                    template_id=content.template_id,
                    template_values=content.template_values,
                    observed_on=content.observed_on,
                    version=entry.version,
                    created_at=entry.created_at,
                    updated_at=entry.updated_at,
                    shared_with_family_at=entry.shared_with_family_at,
                    photo_ids=tuple(photos.get(entry.id, ())),
                )
            )
        return views


def _time(load: Callable[[], list[EntryView]]) -> tuple[float, list[EntryView]]:
    gc.collect()
    started = time.perf_counter()
    views = load()
    return time.perf_counter() - started, views


def measure(ctx: RunContext) -> list[Figure]:
    database, keys, child_id = _build(ctx)

    def encrypted() -> list[EntryView]:
        return load_encrypted(database, keys, child_id)

    def plaintext() -> list[EntryView]:
        return load_plaintext(database, child_id)

    # Warm-up: statement caches, the key cache (as in a request within the cache lifetime).
    reference = encrypted()
    if plaintext() != reference or len(reference) != ENTRIES:
        raise BenchError("the plaintext twin does not hold the same entries")
    timings: dict[str, list[float]] = {"encrypted": [], "plaintext": []}
    for _ in range(RUNS):
        for name, load in (("encrypted", encrypted), ("plaintext", plaintext)):
            seconds, views = _time(load)
            if len(views) != ENTRIES:
                raise BenchError(f"{name} loaded {len(views)} entries")
            timings[name].append(seconds)
    median, baseline = (
        statistics.median(timings["encrypted"]),
        statistics.median(timings["plaintext"]),
    )
    ctx.log(
        f"{NAME}: {ENTRIES} entries; decrypted "
        f"{', '.join(f'{t * 1000:.1f}' for t in timings['encrypted'])} ms; plaintext "
        f"{', '.join(f'{t * 1000:.1f}' for t in timings['plaintext'])} ms"
    )
    return [figure(NAME, "seconds", median, "s", baselines={"plaintext": baseline}, digits=4)]


@register(NAME)
def crypto_timeline(ctx: RunContext) -> list[Figure]:
    """A child's 200 entries decrypted (warm key cache) vs the same rows in plaintext"""
    return measure(ctx)
