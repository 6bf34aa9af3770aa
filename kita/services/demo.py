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
from datetime import date, datetime, time, timedelta

from argon2 import PasswordHasher
from PIL import Image, ImageDraw
from sqlalchemy import select
from sqlalchemy.orm import Session

from kita import audit
from kita.access import Actor, ConversationSide, load_actor
from kita.blobs import BlobStore
from kita.crypto import KeyService
from kita.models.accounts import GroupAssignment, Membership, Role, User
from kita.models.documentation import ConsentMethod, ConsentPurpose
from kita.models.messaging import (
    Announcement,
    AnnouncementRecipient,
    Conversation,
    Team,
    WorkingHours,
)
from kita.models.organisation import Child, Council, Group, GuardianLink, Kita, Provider, Relation
from kita.services import announcements, consent, conversations, documentation, photos
from kita.services.announcements import Audience
from kita.services.translation import Translator

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


# --- announcements ---------------------------------------------------------------------------

DEMO_FREE_TEXT = (
    "Liebe Eltern, nächste Woche beginnt die Eingewöhnung der neuen Kinder. Bitte bringen Sie "
    "morgens etwas mehr Zeit mit und geben Sie Ihrem Kind ein Kuscheltier mit."
)


def load_demo_announcements(
    db: Session,
    *,
    keys: KeyService,
    blobs: BlobStore,
    translator: Translator,
    now: datetime,
) -> int:
    """Announcements of every category in the demo city, through the real services: from the
    phrasebook (every language, no engine), one free text (machine translated when a provider
    is configured, else PENDING and retried by the worker), one with confirmations, one
    scheduled. Does nothing when the demo city is missing or already has announcements;
    returns how many were created."""
    provider_id = db.scalars(select(Provider.id).where(Provider.name == DEMO_PROVIDER)).first()
    if provider_id is None:
        return 0
    if db.scalars(select(Announcement.id).where(Announcement.provider_id == provider_id)).first():
        return 0
    kitas = {
        kita.name: kita for kita in db.scalars(select(Kita).where(Kita.provider_id == provider_id))
    }
    sonnenschein, regenbogen = kitas[KITAS[0][0]], kitas[KITAS[1][0]]
    mice = db.scalars(
        select(Group).where(Group.kita_id == sonnenschein.id, Group.name == KITAS[0][2][0])
    ).one()

    def staff(email: str) -> Actor:
        account = db.scalars(select(User).where(User.email == f"{email}@{DEMO_DOMAIN}")).one()
        return load_actor(db, account)

    leader, educator, other_leader = staff("leitung1"), staff("fachkraft1"), staff("leitung2")
    soon = (now + timedelta(days=7)).date().isoformat()
    later = (now + timedelta(days=21)).date().isoformat()
    plans = [
        (leader, Audience(kita_ids=(sonnenschein.id,)), "closure", "staff_training_closure",
         {"date": soon}, False),
        (leader, Audience(kita_ids=(sonnenschein.id,)), "event", "summer_festival",
         {"date": later, "time": "15:00"}, True),
        (educator, Audience(group_ids=(mice.id,)), "health", "head_lice", {}, False),
        (other_leader, Audience(kita_ids=(regenbogen.id,)), "urgent", "heating_failure", {},
         False),
        (leader, Audience(kita_ids=(sonnenschein.id,)), "information", None, {}, False),
    ]  # fmt: skip
    created = 0
    for actor, audience, category, phrase, params, confirm in plans:
        draft = announcements.create_draft(
            db,
            actor=actor,
            data=announcements.AnnouncementInput(
                category=category,
                source_locale="de",
                audience=audience,
                title="Eingewöhnung der neuen Kinder" if phrase is None else "",
                body=DEMO_FREE_TEXT if phrase is None else "",
                phrase_key=phrase,
                phrase_params=params,
                confirm_required=confirm,
                confirm_deadline=now + timedelta(days=14) if confirm else None,
            ),
            now=now,
            keys=keys,
            blobs=blobs,
        )
        announcements.send(db, draft, now, translator, keys, actor=actor)
        created += 1
        if confirm:
            # About a third of the families have already read and confirmed.
            recipients = db.scalars(
                select(AnnouncementRecipient)
                .where(AnnouncementRecipient.announcement_id == draft.id)
                .order_by(AnnouncementRecipient.user_id)
            ).all()
            for recipient in recipients[::3]:
                recipient.read_at = recipient.confirmed_at = now
    # One for next week, still waiting for its time.
    scheduled = announcements.create_draft(
        db,
        actor=leader,
        data=announcements.AnnouncementInput(
            category="information",
            source_locale="de",
            audience=Audience(kita_ids=(sonnenschein.id,)),
            phrase_key="rain_clothes",
            scheduled_at=now + timedelta(days=6),
        ),
        now=now,
    )
    announcements.schedule(db, actor=leader, announcement=scheduled, now=now)
    db.flush()
    return created + 1


# --- conversations ---------------------------------------------------------------------------

#: Working hours of every demo Kita: Monday to Thursday 7:30-16:30, Friday 7:30-14:00.
DEMO_WORKING_HOURS = {
    **{weekday: (time(7, 30), time(16, 30)) for weekday in range(4)},
    4: (time(7, 30), time(14, 0)),
}
#: (family language, team, topic, messages as (from staff, text), needs an interpreter)
DEMO_CONVERSATIONS: tuple[tuple[str, str, str, tuple[tuple[bool, str], ...], bool], ...] = (
    (
        "tr",
        "group",
        "absence",
        (
            (False, "Merhaba, kızım bugün ateşi olduğu için evde kalacak. "
                    "Yarın doktora gideceğiz."),
            (True, "Gute Besserung! Danke für die Nachricht. Sagen Sie uns bitte Bescheid, "
                   "wann Ihre Tochter wiederkommt."),
            (False, "Teşekkürler, perşembe günü tekrar geleceğiz."),
        ),
        False,
    ),
    (
        "ar",
        "group",
        "pickup",
        (
            (False, "مرحبا، هل يمكن لجدة ابني أن تأخذه اليوم من الروضة؟"),
            (True, "Ja, gerne. Bitte geben Sie uns den Namen der Großmutter schriftlich, "
                   "am besten hier als Nachricht."),
        ),
        False,
    ),
    (
        "uk",
        "office",
        "appointment",
        (
            (False, "Добрий день! Ми хотіли б домовитися про зустріч щодо розвитку нашої дитини."),
            (True, "Guten Tag, sehr gerne. Passt Ihnen Dienstag um 15 Uhr? Wir organisieren "
                   "eine Dolmetscherin für das Gespräch."),
        ),
        True,
    ),
)  # fmt: skip


def load_demo_conversations(
    db: Session,
    *,
    keys: KeyService,
    blobs: BlobStore,
    translator: Translator,
    now: datetime,
) -> int:
    """Working hours for every demo Kita and a few conversations between families and teams
    (Turkish, Arabic and Ukrainian parents; German answers), through the real services, so
    everything is encrypted and translated as in use. Does nothing when the demo city is
    missing or already has conversations; returns how many conversations were created."""
    provider_id = db.scalars(select(Provider.id).where(Provider.name == DEMO_PROVIDER)).first()
    if provider_id is None:
        return 0
    kitas = list(db.scalars(select(Kita).where(Kita.provider_id == provider_id)))
    kita_ids = [kita.id for kita in kitas]
    for kita in kitas:
        if not conversations.working_hours(db, kita.id):
            db.add_all(
                WorkingHours(kita_id=kita.id, weekday=weekday, starts=span[0], ends=span[1])
                for weekday, span in DEMO_WORKING_HOURS.items()
            )
    db.flush()
    if db.scalars(select(Conversation.id).where(Conversation.kita_id.in_(kita_ids))).first():
        return 0
    created = 0
    used: set[uuid.UUID] = set()
    for number, (language, team, topic, messages, interpreter) in enumerate(DEMO_CONVERSATIONS):
        # The first demo parent (eltern1, Turkish) gets the first conversation.
        found = db.execute(
            select(User, Child)
            .join(GuardianLink, GuardianLink.user_id == User.id)
            .join(Child, Child.id == GuardianLink.child_id)
            .where(
                User.locale == language,
                Child.kita_id.in_(kita_ids),
                Child.group_id.is_not(None),
                GuardianLink.has_custody.is_(True),
            )
            .order_by(User.email != f"eltern1@{DEMO_DOMAIN}", Child.kita_id, User.email)
        ).all()
        match = next(((p, c) for p, c in found if c.id not in used), None)
        if match is None:
            continue
        parent, child = match
        used.add(child.id)
        if team == "group":
            staff_user = db.scalars(
                select(User)
                .join(GroupAssignment, GroupAssignment.user_id == User.id)
                .where(GroupAssignment.group_id == child.group_id)
                .order_by(User.email)
            ).first()
        else:
            staff_user = db.scalars(
                select(User)
                .join(Membership, Membership.user_id == User.id)
                .where(Membership.kita_id == child.kita_id, Membership.role == Role.LEADER)
                .order_by(User.email)
            ).first()
        if staff_user is None:
            continue
        family, staff = load_actor(db, parent), load_actor(db, staff_user)
        at = now - timedelta(days=3 - number, hours=5)
        first_staff, first_text = messages[0]
        result = conversations.start_conversation(
            db,
            actor=staff if first_staff else family,
            keys=keys,
            blobs=blobs,
            translator=translator,
            draft=conversations.ConversationDraft(child.id, Team(team), topic, first_text),
            writer_locale=language,
            now=at,
        )
        for offset, (from_staff, text) in enumerate(messages[1:], start=1):
            conversations.post_message(
                db,
                actor=staff if from_staff else family,
                side=ConversationSide.STAFF if from_staff else ConversationSide.FAMILY,
                keys=keys,
                blobs=blobs,
                translator=translator,
                conversation=result.conversation,
                body=text,
                writer_locale="de" if from_staff else language,
                now=at + timedelta(hours=offset * 2),
            )
        if interpreter:
            conversations.set_needs_interpreter(
                db, actor=staff, conversation=result.conversation, needed=True, now=at
            )
        created += 1
    db.flush()
    return created
