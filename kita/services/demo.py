"""The demo city: one provider, three Kitas, nine groups, about 150 children and their families,
staff of every role and a parent council per Kita. Loading it twice changes nothing."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session

from kita import audit
from kita.models.accounts import GroupAssignment, Membership, Role, User
from kita.models.organisation import Child, Council, Group, GuardianLink, Kita, Provider, Relation

DEMO_PROVIDER = "Demo-Träger Musterstadt"
DEMO_PASSWORD = "kita-demo-2026"  # noqa: S105 (public demo data)
DEMO_DOMAIN = "demo.kita.example"

KITAS = (
    ("Kita Sonnenschein", "Sonnenweg 1", ("Mäuse", "Bären", "Füchse")),
    ("Kita Regenbogen", "Regenbogenstraße 7", ("Igel", "Eulen", "Frösche")),
    ("Kita Löwenzahn", "Am Park 12", ("Bienen", "Käfer", "Schmetterlinge")),
)
# Languages spoken at home, weighted like the city's families.
LANGUAGES = ("de", "de", "de", "tr", "tr", "ar", "ar", "bg", "ro", "uk", "pl", "ru", "fa", "en")
FIRST_NAMES = (
    "Emma",
    "Mia",
    "Ben",
    "Paul",
    "Elif",
    "Yusuf",
    "Amira",
    "Omar",
    "Ivan",
    "Maria",
    "Andrei",
    "Ioana",
    "Olena",
    "Taras",
    "Zofia",
    "Jakub",
    "Darya",
    "Mikhail",
    "Sara",
    "Reza",
    "Lina",
    "Noah",
    "Leni",
    "Can",
    "Zeynep",
    "Aylin",
    "Malik",
    "Nour",
    "Georgi",
    "Elena",
    "Luca",
    "Hanna",
)
LAST_NAMES = (
    "Müller",
    "Schmidt",
    "Yılmaz",
    "Kaya",
    "Haddad",
    "Nasser",
    "Petrov",
    "Dimitrova",
    "Popescu",
    "Ionescu",
    "Kovalenko",
    "Shevchenko",
    "Nowak",
    "Kowalski",
    "Ivanova",
    "Smirnov",
    "Ahmadi",
    "Karimi",
    "Becker",
    "Wagner",
    "Demir",
    "Öztürk",
    "Hoffmann",
    "Schulz",
)
CHILDREN_PER_GROUP = 17


@dataclass(frozen=True)
class DemoLogin:
    role: str
    email: str
    password: str
    note: str = ""


def demo_logins() -> list[DemoLogin]:
    return [
        DemoLogin(
            "provider admin", f"admin@{DEMO_DOMAIN}", DEMO_PASSWORD, "TOTP enrolment on first login"
        ),
        DemoLogin(
            "Kita leader", f"leitung1@{DEMO_DOMAIN}", DEMO_PASSWORD, "TOTP enrolment on first login"
        ),
        DemoLogin(
            "educator", f"fachkraft1@{DEMO_DOMAIN}", DEMO_PASSWORD, "TOTP enrolment on first login"
        ),
        DemoLogin(
            "caretaker",
            f"hausmeister@{DEMO_DOMAIN}",
            DEMO_PASSWORD,
            "TOTP enrolment on first login",
        ),
        DemoLogin("parent (Turkish)", f"eltern1@{DEMO_DOMAIN}", DEMO_PASSWORD),
        DemoLogin("parent council", f"beirat1@{DEMO_DOMAIN}", DEMO_PASSWORD),
    ]


def load_demo(db: Session, hasher: PasswordHasher, *, seed: int = 2026) -> bool:
    """Create the demo city unless it exists. Returns True when it was created now."""
    if db.scalars(select(Provider.id).where(Provider.name == DEMO_PROVIDER)).first() is not None:
        return False
    rng = random.Random(seed)  # noqa: S311 (repeatable demo data, not security)
    # One hash for every demo account: argon2 is slow by design, and the password is public.
    password_hash = hasher.hash(DEMO_PASSWORD)
    provider = Provider(id=uuid.uuid4(), name=DEMO_PROVIDER)
    db.add(provider)
    # Users, Kitas and councils refer to the provider without an ORM relationship: flush first.
    db.flush()

    def user(email: str, name: str, locale: str | None = "de") -> User:
        account = User(
            id=uuid.uuid4(),
            email=email,
            display_name=name,
            password_hash=password_hash,
            locale=locale,
        )
        db.add(account)
        db.flush()
        return account

    admin = user(f"admin@{DEMO_DOMAIN}", "Petra Verwaltung")
    admin.admin_of_provider_id = provider.id
    caretaker = user(f"hausmeister@{DEMO_DOMAIN}", "Karl Hausmeister")
    parent_no = 0
    today = date.today()
    for kita_no, (kita_name, address, group_names) in enumerate(KITAS, start=1):
        kita = Kita(id=uuid.uuid4(), provider_id=provider.id, name=kita_name, address=address)
        db.add(kita)
        db.flush()
        db.add(Council(provider_id=provider.id, kita_id=kita.id, name=f"Elternbeirat {kita_name}"))
        leader = user(f"leitung{kita_no}@{DEMO_DOMAIN}", f"Leitung {kita_name}")
        db.add(Membership(user_id=leader.id, kita_id=kita.id, role=Role.LEADER))
        db.add(Membership(user_id=caretaker.id, kita_id=kita.id, role=Role.CARETAKER))
        council_members = 0
        for group_no, group_name in enumerate(group_names, start=1):
            group = Group(id=uuid.uuid4(), kita_id=kita.id, name=group_name)
            db.add(group)
            db.flush()
            educator_no = (kita_no - 1) * 3 + group_no
            educator = user(f"fachkraft{educator_no}@{DEMO_DOMAIN}", f"Fachkraft {group_name}")
            db.add(Membership(user_id=educator.id, kita_id=kita.id, role=Role.EDUCATOR))
            db.add(GroupAssignment(user_id=educator.id, group_id=group.id))
            for _ in range(CHILDREN_PER_GROUP):
                last = rng.choice(LAST_NAMES)
                child = Child(
                    id=uuid.uuid4(),
                    kita_id=kita.id,
                    group_id=group.id,
                    first_name=rng.choice(FIRST_NAMES),
                    last_name=last,
                    birth_date=today - timedelta(days=rng.randint(365, 6 * 365)),
                    entry_date=today - timedelta(days=rng.randint(30, 700)),
                )
                db.add(child)
                locale = rng.choice(LANGUAGES)
                parent_no += 1
                # The first demo parent reads Turkish, so the printed login shows a translation.
                if parent_no == 1:
                    locale = "tr"
                parent = user(f"eltern{parent_no}@{DEMO_DOMAIN}", f"Familie {last}", locale)
                db.add(Membership(user_id=parent.id, kita_id=kita.id, role=Role.PARENT))
                db.add(
                    GuardianLink(
                        child_id=child.id,
                        user_id=parent.id,
                        relation=rng.choice([Relation.MOTHER, Relation.FATHER]),
                    )
                )
                if rng.random() < 0.4:
                    parent_no += 1
                    second = user(f"eltern{parent_no}@{DEMO_DOMAIN}", f"Familie {last}", locale)
                    db.add(Membership(user_id=second.id, kita_id=kita.id, role=Role.PARENT))
                    db.add(
                        GuardianLink(
                            child_id=child.id,
                            user_id=second.id,
                            relation=Relation.GUARDIAN,
                            may_pick_up=True,
                        )
                    )
                if council_members < 2:
                    council_members += 1
                    db.add(Membership(user_id=parent.id, kita_id=kita.id, role=Role.COUNCIL))
                    if kita_no == 1 and council_members == 1:
                        beirat = user(f"beirat1@{DEMO_DOMAIN}", "Beirat Sonnenschein")
                        db.add(Membership(user_id=beirat.id, kita_id=kita.id, role=Role.COUNCIL))
    db.flush()
    audit.record(db, action="demo.loaded", object_type="provider", object_id=provider.id)
    return True
