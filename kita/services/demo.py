"""The demo city: one provider, three Kitas, nine groups, about 150 children and their families,
staff of every role and a parent council per Kita. Loading it twice changes nothing.

With a key service, every child also gets development documentation through the real services
(so everything is encrypted, audited and consent-bound as in use): the family's consents to
documentation and photos, given by a guardian in the app, and two or three entries by the
group's educator: final ones shared with the family (one with a child's drawing as its photo),
and a draft or an internal note.
"""

from __future__ import annotations

import io
import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta

from argon2 import PasswordHasher
from PIL import Image, ImageDraw
from sqlalchemy import select
from sqlalchemy.orm import Session

from kita import audit
from kita.access import load_actor
from kita.blobs import BlobStore
from kita.crypto import KeyService
from kita.models.accounts import GroupAssignment, Membership, Role, User
from kita.models.documentation import ConsentMethod, ConsentPurpose
from kita.models.organisation import Child, Council, Group, GuardianLink, Kita, Provider, Relation
from kita.services import consent, documentation, photos

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

# (title, text, areas, dispositions): everyday observations an educator writes.
OBSERVATIONS = (
    (
        "Turm aus Bausteinen",
        "Hat heute einen Turm aus zwölf Bausteinen gebaut und dabei laut gezählt. Als er "
        "umfiel, hat sie es gleich noch einmal versucht, diesmal mit den großen Steinen unten.",
        ("mathematics", "science_technology"),
        ("engaged", "persisting"),
    ),
    (
        "Im Morgenkreis erzählt",
        "Hat im Morgenkreis vom Besuch bei den Großeltern erzählt und dabei neue Wörter "
        "ausprobiert. Die anderen Kinder haben Fragen gestellt, die geduldig beantwortet wurden.",
        ("language_communication", "social_intercultural"),
        ("communicating",),
    ),
    (
        "Balancieren im Garten",
        "Ist heute zum ersten Mal ohne Hilfe über den ganzen Balken balanciert und hat sich "
        "danach sehr gefreut.",
        ("movement",),
        ("persisting",),
    ),
    (
        "Schnecken beobachtet",
        "Hat nach dem Regen lange die Schnecken im Beet beobachtet und gefragt, wo sie wohnen. "
        "Gemeinsam haben wir ein Buch über Schnecken angesehen.",
        ("ecology", "science_technology"),
        ("interested",),
    ),
    (
        "Lied mit Rasseln",
        "Hat beim neuen Lied mit der Rassel den Takt gehalten und ein eigenes Strophenende "
        "erfunden.",
        ("arts_aesthetics",),
        ("engaged", "communicating"),
    ),
    (
        "Tisch gedeckt",
        "Hat beim Mittagessen für die ganze Gruppe den Tisch gedeckt und darauf geachtet, dass "
        "jedes Kind einen Becher hat.",
        ("body_health_nutrition", "social_intercultural"),
        ("taking_responsibility",),
    ),
    (
        "Bilderbuch erklärt",
        "Hat einem jüngeren Kind ein Bilderbuch gezeigt und die Bilder Seite für Seite erklärt.",
        ("media", "language_communication"),
        ("communicating", "taking_responsibility"),
    ),
    (
        "Frage nach dem Fest",
        "Hat beim Gespräch über das Zuckerfest und Weihnachten gefragt, warum Menschen "
        "verschiedene Feste feiern, und von der eigenen Familie erzählt.",
        ("religion_ethics", "social_intercultural"),
        ("interested", "communicating"),
    ),
)
DRAWING_COLOURS = ("orange", "gold", "tomato", "skyblue", "yellowgreen", "orchid")


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


def drawing(rng: random.Random) -> bytes:
    """A child's drawing as PNG: a house under the sun, a tree, a few flowers."""
    image = Image.new("RGB", (480, 360), "white")
    pen = ImageDraw.Draw(image)
    pen.ellipse((360, 20, 450, 110), fill=rng.choice(DRAWING_COLOURS))
    pen.rectangle((80, 180, 250, 330), outline="black", width=5, fill=rng.choice(DRAWING_COLOURS))
    pen.polygon([(60, 180), (165, 90), (270, 180)], fill="firebrick")
    pen.rectangle((150, 260, 185, 330), fill="saddlebrown")
    pen.rectangle((330, 230, 350, 330), fill="saddlebrown")
    pen.ellipse((290, 150, 390, 250), fill="forestgreen")
    for _ in range(5):
        x = rng.randrange(20, 460)
        pen.line((x, 340, x, 310), fill="green", width=3)
        pen.ellipse((x - 8, 298, x + 8, 314), fill=rng.choice(DRAWING_COLOURS))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _document_child(
    db: Session,
    *,
    keys: KeyService,
    blobs: BlobStore,
    rng: random.Random,
    child: Child,
    educator: User,
    guardian: User,
    today: date,
) -> None:
    """Consents by the guardian and 2-3 entries by the educator, through the real services."""
    family = load_actor(db, guardian)
    for purpose in (ConsentPurpose.DOCUMENTATION, ConsentPurpose.PHOTOS_IN_DOCUMENTATION):
        consent.give_consent(
            db, actor=family, child=child, purpose=purpose, method=ConsentMethod.APP
        )
    staff = load_actor(db, educator)
    chosen = rng.sample(OBSERVATIONS, rng.choice((2, 3)))
    for number, (title, text, areas, dispositions) in enumerate(chosen):
        # The first two are final and shared; a third one is a draft.
        final = number < 2
        entry = documentation.save_entry(
            db,
            actor=staff,
            keys=keys,
            entry_id=uuid.uuid4(),
            data=documentation.EntryInput(
                child_id=child.id,
                kind="learning_story" if number == 1 else "observation",
                status="final" if final else "draft",
                title=title,
                text=f"{child.first_name} {text[0].lower()}{text[1:]}",
                areas=list(areas),
                dispositions=list(dispositions),
                observed_on=today - timedelta(days=rng.randint(3, 200)),
            ),
        ).entry
        if number == 0:
            photos.add_photo(
                db,
                actor=staff,
                keys=keys,
                blobs=blobs,
                entry_id=entry.id,
                photo_id=uuid.uuid4(),
                data=drawing(rng),
            )
        if final:
            documentation.share_entry(db, actor=staff, entry_id=entry.id, shared=True)


def load_demo(
    db: Session,
    hasher: PasswordHasher,
    *,
    seed: int = 2026,
    keys: KeyService | None = None,
    blobs: BlobStore | None = None,
) -> bool:
    """Create the demo city unless it exists (then nothing is added). Returns True when it
    was created now. With ``keys`` and ``blobs`` every child gets consents and documentation
    (encrypted with its own data key, photos in the blob store)."""
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
    documented: list[tuple[Child, User, User]] = []
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
                documented.append((child, educator, parent))
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
    if keys is not None and blobs is not None:
        # Its own random stream, so the city itself stays the same with or without documentation.
        doc_rng = random.Random(seed + 1)  # noqa: S311 (demo data)
        for child, educator, guardian in documented:
            _document_child(
                db,
                keys=keys,
                blobs=blobs,
                rng=doc_rng,
                child=child,
                educator=educator,
                guardian=guardian,
                today=today,
            )
    audit.record(db, action="demo.loaded", object_type="provider", object_id=provider.id)
    return True
