"""A synthetic city shaped like the demo data (kita/services/demo.py), built fast with bulk
Core inserts: providers → Kitas (~70 families each) → groups → children → users → memberships →
guardian links. It can grow, so a benchmark can measure the same page on 1× and 10× the data."""

from __future__ import annotations

import random
import secrets
import subprocess
import sys
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, text

from bench.registry import BenchError
from bench.server import app_environment
from kita.db import make_engine
from kita.models.accounts import GroupAssignment, Membership, Role, ServerSession, User
from kita.models.organisation import (
    Child,
    Council,
    Group,
    GuardianLink,
    Kita,
    Provider,
    Relation,
)
from kita.services.accounts import make_password_hasher
from kita.services.demo import FIRST_NAMES, LANGUAGES, LAST_NAMES
from kita.sessions import _hash

FAMILIES_PER_KITA = 70
CHILDREN_PER_GROUP = 18
KITAS_PER_PROVIDER = 50
SECOND_GUARDIAN_SHARE = 0.4
COUNCIL_MEMBERS_PER_KITA = 2
# Kitas written per transaction: bounds memory (about 100 rows per Kita) and the WAL size.
KITAS_PER_BATCH = 200
INIT_TIMEOUT_S = 120
DOMAIN = "bench.kita.example"
PASSWORD = "kita-bench-2026"

# Insert order follows the foreign keys.
TABLES = (Provider, Kita, Council, Group, Child, User, Membership, GroupAssignment, GuardianLink)


@dataclass(frozen=True)
class Parent:
    """A parent who can be logged in, and the name of a child the home page must show."""

    user_id: uuid.UUID
    child_name: str


@dataclass
class City:
    """One SQLite instance folder holding the synthetic city; ``grow_to`` adds families."""

    instance: Path
    engine: Engine
    password_hash: str
    rng: random.Random = field(default_factory=lambda: random.Random(2026))
    families: int = 0
    kitas: int = 0
    provider_id: uuid.UUID | None = None
    parents: list[Parent] = field(default_factory=list)

    @classmethod
    def create(cls, instance: Path) -> City:
        """Run the real ``kita init`` for ``instance`` (secret key, master key, migrated SQLite
        database, whatever else it sets up), then open the database."""
        done = subprocess.run(
            [sys.executable, "-c", "from kita.cli import main; main()", "init"],
            env=app_environment(instance),
            capture_output=True,
            text=True,
            timeout=INIT_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"kita init failed: {done.stdout}{done.stderr}"[-2000:])
        url = f"sqlite:///{instance / 'kita.sqlite3'}"
        # One argon2 hash shared by every account, as in the demo: hashing is slow by design.
        password_hash = make_password_hasher("default").hash(PASSWORD)
        return cls(instance=instance, engine=make_engine(url), password_hash=password_hash)

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def grow_to(self, families: int) -> None:
        """Add Kitas of ``FAMILIES_PER_KITA`` families until the city has ``families``."""
        now = datetime.now(UTC)
        while self.families < families:
            rows: dict[type, list[dict[str, Any]]] = defaultdict(list)
            for _ in range(KITAS_PER_BATCH):
                if self.families >= families:
                    break
                self._add_kita(rows, min(FAMILIES_PER_KITA, families - self.families), now)
            with self.engine.begin() as conn:
                for model in TABLES:
                    if rows[model]:
                        conn.execute(insert(model.__table__), rows[model])  # type: ignore[arg-type]
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def _user(
        self,
        rows: dict[type, list[dict[str, Any]]],
        email: str,
        name: str,
        locale: str,
        now: datetime,
    ) -> uuid.UUID:
        user_id = self._uuid()
        rows[User].append(
            {
                "id": user_id,
                "email": email,
                "display_name": name,
                "password_hash": self.password_hash,
                "locale": locale,
                "is_active": True,
                "created_at": now,
                "password_changed_at": now,
            }
        )
        return user_id

    def _membership(
        self,
        rows: dict[type, list[dict[str, Any]]],
        user_id: uuid.UUID,
        kita_id: uuid.UUID,
        role: Role,
        now: datetime,
    ) -> None:
        rows[Membership].append(
            {
                "id": self._uuid(),
                "user_id": user_id,
                "kita_id": kita_id,
                "role": role,
                "created_at": now,
            }
        )

    def _add_kita(
        self, rows: dict[type, list[dict[str, Any]]], families: int, now: datetime
    ) -> None:
        rng = self.rng
        if self.provider_id is None or self.kitas % KITAS_PER_PROVIDER == 0:
            self.provider_id = self._uuid()
            number = self.kitas // KITAS_PER_PROVIDER + 1
            rows[Provider].append(
                {"id": self.provider_id, "name": f"Träger {number}", "created_at": now}
            )
        self.kitas += 1
        kita_id = self._uuid()
        name = f"Kita {self.kitas}"
        rows[Kita].append(
            {
                "id": kita_id,
                "provider_id": self.provider_id,
                "name": name,
                "address": f"Parkstraße {self.kitas}",
                "default_locale": "de",
                "created_at": now,
            }
        )
        rows[Council].append(
            {
                "id": self._uuid(),
                "provider_id": self.provider_id,
                "kita_id": kita_id,
                "name": f"Elternbeirat {name}",
                "created_at": now,
            }
        )
        leader = self._user(rows, f"leitung{self.kitas}@{DOMAIN}", f"Leitung {name}", "de", now)
        self._membership(rows, leader, kita_id, Role.LEADER, now)
        groups: list[uuid.UUID] = []
        for group_no in range(-(-families // CHILDREN_PER_GROUP)):
            group_id = self._uuid()
            groups.append(group_id)
            rows[Group].append(
                {
                    "id": group_id,
                    "kita_id": kita_id,
                    "name": f"Gruppe {group_no + 1}",
                    "created_at": now,
                }
            )
            educator = self._user(
                rows, f"fachkraft{self.kitas}-{group_no + 1}@{DOMAIN}", "Fachkraft", "de", now
            )
            self._membership(rows, educator, kita_id, Role.EDUCATOR, now)
            rows[GroupAssignment].append(
                {"id": self._uuid(), "user_id": educator, "group_id": group_id}
            )
        today = date.today()
        for family_no in range(families):
            self.families += 1
            child_id = self._uuid()
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            rows[Child].append(
                {
                    "id": child_id,
                    "kita_id": kita_id,
                    "group_id": groups[family_no // CHILDREN_PER_GROUP],
                    "first_name": first,
                    "last_name": last,
                    "birth_date": today - timedelta(days=rng.randint(365, 6 * 365)),
                    "entry_date": today - timedelta(days=rng.randint(30, 700)),
                    "created_at": now,
                }
            )
            locale = rng.choice(LANGUAGES)
            guardians = 2 if rng.random() < SECOND_GUARDIAN_SHARE else 1
            for guardian_no in range(guardians):
                parent = self._user(
                    rows,
                    f"eltern{self.families}-{guardian_no + 1}@{DOMAIN}",
                    f"Familie {last}",
                    locale,
                    now,
                )
                self._membership(rows, parent, kita_id, Role.PARENT, now)
                if family_no < COUNCIL_MEMBERS_PER_KITA and guardian_no == 0:
                    self._membership(rows, parent, kita_id, Role.COUNCIL, now)
                relation = (
                    rng.choice([Relation.MOTHER, Relation.FATHER])
                    if guardian_no == 0
                    else Relation.GUARDIAN
                )
                rows[GuardianLink].append(
                    {
                        "id": self._uuid(),
                        "child_id": child_id,
                        "user_id": parent,
                        "relation": relation,
                        "has_custody": True,
                        "may_pick_up": True,
                        "created_at": now,
                    }
                )
                if guardian_no == 0:
                    self.parents.append(Parent(parent, f"{first} {last}"))

    def log_in(self, count: int) -> list[tuple[str, Parent]]:
        """Log ``count`` randomly chosen parents in (server-side session rows, as a login would
        write them). Returns (cookie token, parent) pairs."""
        chosen = self.rng.sample(self.parents, count)
        now = datetime.now(UTC)
        tokens = [secrets.token_urlsafe(32) for _ in chosen]
        with self.engine.begin() as conn:
            conn.execute(
                insert(ServerSession.__table__),  # type: ignore[arg-type]
                [
                    {
                        "id": _hash(token),
                        "user_id": parent.user_id,
                        "data": {"uid": str(parent.user_id)},
                        "created_at": now,
                        "last_seen_at": now,
                    }
                    for token, parent in zip(tokens, chosen, strict=True)
                ],
            )
        return list(zip(tokens, chosen, strict=True))

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                model.__tablename__: int(
                    conn.execute(text(f"SELECT count(*) FROM {model.__tablename__}")).scalar_one()  # noqa: S608
                )
                for model in TABLES
            }

    def dispose(self) -> None:
        self.engine.dispose()
