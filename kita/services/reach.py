"""Reach of an announcement: which families it reached (delivered, read, confirmed), counts
per language, the families not reached (to phone, or to print a letter for) and those letters.

A family is the targeted children who share guardians (siblings are one family) together with
their guardians who received the announcement. A family counts as reached when one of its
guardians read it. A targeted child whose guardians have no account forms a family without
recipients: never reached, printed for in the Kita's language.

Who may see this is decided by ``kita.access.get_reach_announcement``.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

from babel import dates as babel_dates
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.orm import Session

from kita.config import RTL_LOCALES, SUPPORTED_LOCALES
from kita.models.accounts import User
from kita.models.messaging import (
    Announcement,
    AnnouncementRecipient,
    AnnouncementStatus,
    AnnouncementTarget,
    AnnouncementTranslation,
)
from kita.models.organisation import Child, Group, GuardianLink, Kita
from kita.reports.letter import Letter, LetterBatch, LetterLabels
from kita.reports.pdf import DISPLAY_TIMEZONE
from kita.services.announcements import CATEGORY_LABELS
from kita.services.feed import localise


@dataclass(frozen=True)
class GuardianReach:
    user_id: uuid.UUID
    name: str
    locale: str
    delivered_at: datetime | None
    read_at: datetime | None
    confirmed_at: datetime | None


@dataclass(frozen=True)
class ChildRef:
    name: str
    group: str


@dataclass(frozen=True)
class FamilyReach:
    """One family: its targeted children, the guardians the announcement was sent to, and the
    language letters to it are printed in."""

    children: list[ChildRef]
    guardians: list[GuardianReach]
    locale: str
    kita_id: uuid.UUID

    @property
    def delivered(self) -> bool:
        return any(g.delivered_at is not None for g in self.guardians)

    @property
    def read(self) -> bool:
        return any(g.read_at is not None for g in self.guardians)

    @property
    def confirmed(self) -> bool:
        return any(g.confirmed_at is not None for g in self.guardians)

    @property
    def child_names(self) -> str:
        return ", ".join(child.name for child in self.children)

    @property
    def groups(self) -> str:
        return ", ".join(sorted({child.group for child in self.children if child.group}))

    @property
    def guardian_names(self) -> str:
        return ", ".join(guardian.name for guardian in self.guardians)

    @property
    def sort_key(self) -> tuple[str, str, str]:
        return (self.groups, self.child_names, self.guardian_names)


@dataclass(frozen=True)
class LanguageCount:
    """Recipients (guardians) reading one language, and how many were reached."""

    locale: str
    recipients: int = 0
    delivered: int = 0
    read: int = 0
    confirmed: int = 0
    families_not_reached: int = 0


@dataclass(frozen=True)
class Reach:
    announcement: Announcement
    families: list[FamilyReach]
    languages: list[LanguageCount]
    confirm_required: bool
    sent: bool

    @property
    def sendable_letters(self) -> bool:
        """Letters are printed for a sent announcement only (not a draft, not recalled)."""
        return self.announcement.status is AnnouncementStatus.SENT

    @property
    def not_reached(self) -> list[FamilyReach]:
        return [family for family in self.families if not family.read]

    @property
    def recipients(self) -> int:
        return sum(len(family.guardians) for family in self.families)

    def count(self, attribute: str) -> int:
        """Families that were delivered/read/confirmed (``attribute``)."""
        return sum(1 for family in self.families if getattr(family, attribute))


# --- building the reach ----------------------------------------------------------------------


def _targeted_children(
    db: Session, announcement: Announcement, day: datetime
) -> list[tuple[Child, str]]:
    targets = list(
        db.scalars(
            select(AnnouncementTarget).where(AnnouncementTarget.announcement_id == announcement.id)
        )
    )
    conditions: list[ColumnElement[bool]] = []
    kitas = [t.kita_id for t in targets if t.group_id is None and t.child_id is None]
    groups = [t.group_id for t in targets if t.group_id is not None]
    children = [t.child_id for t in targets if t.child_id is not None]
    if kitas:
        conditions.append(Child.kita_id.in_(kitas))
    if groups:
        conditions.append(Child.group_id.in_(groups))
    if children:
        conditions.append(Child.id.in_(children))
    today = day.astimezone(DISPLAY_TIMEZONE).date()
    rows = db.execute(
        select(Child, Group.name)
        .outerjoin(Group, Group.id == Child.group_id)
        .where(
            or_(*conditions) if conditions else false(),
            or_(Child.leave_date.is_(None), Child.leave_date >= today),
        )
        .order_by(Child.first_name, Child.last_name, Child.id)
    )
    return [(child, group or "") for child, group in rows]


def _family_locale(guardian_locales: Sequence[str], fallback: str, source_locale: str) -> str:
    """The most common language of the family's guardians; on a tie the one that is not the
    announcement's original language (the reader of the original needs no letter in it)."""
    if not guardian_locales:
        return fallback
    counts = Counter(guardian_locales)
    return sorted(counts, key=lambda loc: (-counts[loc], loc == source_locale, loc))[0]


def _valid_locale(*candidates: str | None) -> str:
    for candidate in candidates:
        if candidate in SUPPORTED_LOCALES:
            return candidate
    return "de"


def build_reach(db: Session, announcement: Announcement, *, now: datetime) -> Reach:
    """Per family delivered/read/confirmed, counts per language and the families not reached.
    The caller has checked access (``kita.access.get_reach_announcement``)."""
    day = announcement.sent_at or now
    children = _targeted_children(db, announcement, day)
    recipients = {
        recipient.user_id: (recipient, name)
        for recipient, name in db.execute(
            select(AnnouncementRecipient, User.display_name)
            .join(User, User.id == AnnouncementRecipient.user_id)
            .where(AnnouncementRecipient.announcement_id == announcement.id)
        )
    }
    child_ids = [child.id for child, _g in children]
    links: list[tuple[uuid.UUID, uuid.UUID, str | None]] = []
    if child_ids:
        links = list(
            db.execute(
                select(GuardianLink.child_id, GuardianLink.user_id, User.locale)
                .join(User, User.id == GuardianLink.user_id)
                .where(GuardianLink.child_id.in_(child_ids))
            )
        )
    kita_locales: dict[uuid.UUID, str] = dict(
        db.execute(
            select(Kita.id, Kita.default_locale).where(
                Kita.id.in_(
                    {child.kita_id for child, _g in children}
                    | {recipient.kita_id for recipient, _n in recipients.values()}
                )
            )
        ).all()
    )
    # Union-find over children: two children with a common guardian are one family.
    parent: dict[uuid.UUID, uuid.UUID] = {child_id: child_id for child_id in child_ids}

    def find(item: uuid.UUID) -> uuid.UUID:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    first_child_of: dict[uuid.UUID, uuid.UUID] = {}
    for child_id, user_id, _locale in links:
        if user_id in first_child_of:
            parent[find(child_id)] = find(first_child_of[user_id])
        else:
            first_child_of[user_id] = child_id
    members: dict[uuid.UUID, list[tuple[Child, str]]] = {}
    for child, group in children:
        members.setdefault(find(child.id), []).append((child, group))
    guardians_of: dict[uuid.UUID, set[uuid.UUID]] = {}
    other_locales: dict[uuid.UUID, list[str]] = {}
    for child_id, user_id, user_locale in links:
        root = find(child_id)
        if user_id in recipients:
            guardians_of.setdefault(root, set()).add(user_id)
        elif user_locale in SUPPORTED_LOCALES:
            other_locales.setdefault(root, []).append(user_locale)
    families: list[FamilyReach] = []
    placed: set[uuid.UUID] = set()
    for root, kids in members.items():
        user_ids = sorted(guardians_of.get(root, set()), key=lambda u: recipients[u][1])
        placed.update(user_ids)
        families.append(
            _family(
                [ChildRef(child.full_name, group) for child, group in kids],
                [recipients[u] for u in user_ids],
                kids[0][0].kita_id,
                fallback=_valid_locale(
                    *other_locales.get(root, []), kita_locales.get(kids[0][0].kita_id)
                ),
                source_locale=announcement.source_locale,
            )
        )
    # Recipients whose child is no longer in the audience (moved group, left): their own family.
    for user_id, (recipient, name) in recipients.items():
        if user_id not in placed:
            families.append(
                _family(
                    [],
                    [(recipient, name)],
                    recipient.kita_id,
                    fallback=recipient.locale,
                    source_locale=announcement.source_locale,
                )
            )
    families.sort(key=lambda family: family.sort_key)
    return Reach(
        announcement=announcement,
        families=families,
        languages=_languages(families),
        confirm_required=announcement.confirm_required,
        sent=announcement.status in {AnnouncementStatus.SENT, AnnouncementStatus.RECALLED},
    )


def _family(
    children: list[ChildRef],
    recipients: Iterable[tuple[AnnouncementRecipient, str]],
    kita_id: uuid.UUID,
    *,
    fallback: str,
    source_locale: str,
) -> FamilyReach:
    guardians = [
        GuardianReach(
            user_id=recipient.user_id,
            name=name,
            locale=recipient.locale,
            delivered_at=recipient.delivered_at,
            read_at=recipient.read_at,
            confirmed_at=recipient.confirmed_at,
        )
        for recipient, name in recipients
    ]
    locale = _family_locale([g.locale for g in guardians], fallback, source_locale)
    return FamilyReach(children=children, guardians=guardians, locale=locale, kita_id=kita_id)


def _languages(families: Sequence[FamilyReach]) -> list[LanguageCount]:
    counts: dict[str, Counter[str]] = {}
    for family in families:
        for guardian in family.guardians:
            count = counts.setdefault(guardian.locale, Counter())
            count["recipients"] += 1
            count["delivered"] += guardian.delivered_at is not None
            count["read"] += guardian.read_at is not None
            count["confirmed"] += guardian.confirmed_at is not None
        if not family.read:
            counts.setdefault(family.locale, Counter())["families_not_reached"] += 1
    return [
        LanguageCount(locale=locale, **dict(count))
        for locale, count in sorted(
            counts.items(), key=lambda item: (-item[1]["recipients"], item[0])
        )
    ]


# --- letters ---------------------------------------------------------------------------------

_LABELS = {
    "salutation": _l("To the family of %(children)s"),
    "salutation_unnamed": _l("To the family"),
    "date": _l("Date"),
    "from_kita": _l("A message from %(kita)s"),
    "not_translated": _l(
        "This message has not been translated into your language yet. Please ask the Kita "
        "if anything is unclear."
    ),
    "machine": _l("Translated automatically. The original is printed below."),
    "original": _l("Original"),
    "interpreter": _l("If you need an interpreter for this matter, please tell the Kita."),
    "confirm_title": _l("Please confirm"),
    "confirm_deadline": _l("Please return this slip to the Kita by %(deadline)s."),
    "confirm_no_deadline": _l("Please return this slip to the Kita."),
    "confirm_text": _l("We have read the message “%(title)s”."),
    "confirm_child": _l("Child"),
    "confirm_signature": _l("Date and signature"),
    "cut": _l("Cut here"),
    "recalled": _l("This message was withdrawn by the Kita."),
}


def _labels(locale: str, **values: str) -> LetterLabels:
    with force_locale(locale):
        texts = {key: str(label) for key, label in _LABELS.items()}
    # Placeholders are filled after the lookup so the catalogs see the msgids as written.
    for key, text in texts.items():
        with suppress(KeyError, ValueError):
            texts[key] = text % values
    return LetterLabels(**texts)


def _category(announcement: Announcement, locale: str) -> str:
    with force_locale(locale):
        return str(CATEGORY_LABELS[announcement.category])


def _deadline(value: datetime | None, locale: str) -> str:
    """A deadline as a written-out date and an hour, in the Kita's time zone."""
    if value is None:
        return ""
    local = value.astimezone(DISPLAY_TIMEZONE)
    day = babel_dates.format_date(local.date(), "long", locale=locale)
    return f"{day}, {babel_dates.format_time(local.time(), 'short', locale=locale)}"


def build_letters(
    db: Session,
    reach: Reach,
    *,
    now: datetime,
    families: Sequence[FamilyReach] | None = None,
) -> LetterBatch:
    """One printable letter per family (default: the families not reached), each in the
    family's language with the original below a translation, the Kita's name, today's date
    and a slip to return when the announcement asks for a confirmation."""
    announcement = reach.announcement
    chosen = list(reach.not_reached if families is None else families)
    locales = {family.locale for family in chosen}
    translations = list(
        db.scalars(
            select(AnnouncementTranslation).where(
                AnnouncementTranslation.announcement_id == announcement.id,
                AnnouncementTranslation.locale.in_(locales),
            )
        )
    )
    kita_names: dict[uuid.UUID, str] = dict(
        db.execute(select(Kita.id, Kita.name).where(Kita.id.in_({f.kita_id for f in chosen}))).all()
    )
    recalled = announcement.status is AnnouncementStatus.RECALLED
    letters = []
    for family in chosen:
        locale = _valid_locale(family.locale)
        text = localise(announcement, translations, [locale])
        deadline = _deadline(announcement.confirm_deadline, locale)
        kita_name = kita_names.get(family.kita_id, "")
        labels = _labels(
            locale,
            children=family.child_names,
            kita=kita_name,
            deadline=deadline,
            title=text.shown.title,
        )
        letters.append(
            Letter(
                locale=locale,
                direction="rtl" if locale in RTL_LOCALES else "ltr",
                kita_name=kita_name,
                date=babel_dates.format_date(
                    now.astimezone(DISPLAY_TIMEZONE).date(), "long", locale=locale
                ),
                children=family.child_names,
                groups=family.groups,
                category=_category(announcement, locale),
                title=text.shown.title,
                body=text.shown.body,
                original_title=text.original.title if text.translated else None,
                original_body=text.original.body if text.translated else None,
                original_locale=announcement.source_locale,
                original_direction=text.original.direction,
                not_translated=text.not_translated,
                machine=text.machine,
                needs_interpreter=announcement.needs_interpreter,
                confirm_slip=announcement.confirm_required and not recalled,
                has_deadline=bool(deadline),
                recalled=recalled,
                labels=labels,
            )
        )
    return LetterBatch(letters=letters)
