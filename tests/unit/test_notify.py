"""notify.enqueue/cancel and the notification preferences, without the network."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.errors import ValidationError
from kita.models.accounts import User
from kita.models.messaging import (
    DeliveryStatus,
    EmailDelivery,
    NotificationSettings,
    PushDelivery,
    PushSubscription,
)
from kita.services import notify
from kita.services.notify import Recipient
from tests.factories import make_user

# 2026-01-14 is a Wednesday in winter: Berlin is UTC+1.
NOON = datetime(2026, 1, 14, 11, 0, tzinfo=UTC)  # 12:00 in Berlin
LATE = datetime(2026, 1, 14, 21, 30, tzinfo=UTC)  # 22:30 in Berlin


def _subscribe(db: Session, user: User, devices: int = 1) -> list[PushSubscription]:
    rows = [
        PushSubscription(
            user_id=user.id,
            endpoint=f"https://fcm.googleapis.com/fcm/send/{uuid.uuid4().hex}",
            p256dh=b"\x04" + b"\x01" * 64,
            auth=b"\x02" * 16,
        )
        for _ in range(devices)
    ]
    db.add_all(rows)
    db.commit()
    return rows


def _enqueue(
    db: Session, users: list[User], category: str = "information", now: datetime = NOON
) -> tuple[uuid.UUID, notify.EnqueueReport]:
    message_id = uuid.uuid4()
    report = notify.enqueue(
        db,
        message_id=message_id,
        kind="announcement",
        category=category,
        recipients=[Recipient(u.id, u.locale or "de") for u in users],
        url=f"/messages/a/{message_id}",
        now=now,
    )
    db.commit()
    return message_id, report


def _deliveries(db: Session, message_id: uuid.UUID) -> list[PushDelivery]:
    return list(db.scalars(select(PushDelivery).where(PushDelivery.message_id == message_id)))


def test_one_row_per_device_with_a_generic_title_and_no_second_row_for_a_repeat(
    db: Session,
) -> None:
    parent = make_user(db, locale="de", name="Ayşe Yılmaz")
    devices = _subscribe(db, parent, devices=2)
    message_id, report = _enqueue(db, [parent, parent], "closure")

    rows = _deliveries(db, message_id)
    assert report.push == 2 and {r.subscription_id for r in rows} == {d.id for d in devices}
    assert {r.title for r in rows} == {notify.generic_title("closure", "de")}
    assert all("Yılmaz" not in r.title and r.urgency == "normal" for r in rows)
    assert {r.topic for r in rows} == {message_id.hex}

    again = notify.enqueue(
        db,
        message_id=message_id,
        kind="announcement",
        category="closure",
        recipients=[Recipient(parent.id, "de")],
        url=f"/messages/a/{message_id}",
        now=NOON,
    )
    db.commit()
    assert again.push == 0 and len(_deliveries(db, message_id)) == 2


def test_muted_categories_are_skipped_but_urgent_always_arrives(db: Session) -> None:
    parent = make_user(db)
    _subscribe(db, parent)
    notify.save_settings(db, parent.id, ["information"], None, None, email_fallback=True)
    db.commit()

    muted_id, muted = _enqueue(db, [parent], "information")
    urgent_id, _report = _enqueue(db, [parent], "urgent")

    assert muted.muted == 1 and _deliveries(db, muted_id) == []
    assert db.scalar(select(func.count()).select_from(EmailDelivery)) == 0
    [urgent] = _deliveries(db, urgent_id)
    assert urgent.urgency == "high"


def test_quiet_hours_delay_until_their_end_in_berlin_time_but_not_urgent(db: Session) -> None:
    parent = make_user(db)
    _subscribe(db, parent)
    notify.save_settings(db, parent.id, [], time(22, 0), time(7, 0), email_fallback=True)
    db.commit()

    quiet_id, report = _enqueue(db, [parent], "event", now=LATE)
    urgent_id, _report = _enqueue(db, [parent], "urgent", now=LATE)
    day_id, _report = _enqueue(db, [parent], "event", now=NOON)

    [delayed] = _deliveries(db, quiet_id)
    assert report.delayed == 1
    # 07:00 the next morning in Berlin is 06:00 UTC.
    assert delayed.next_attempt_at == datetime(2026, 1, 15, 6, 0, tzinfo=UTC)
    assert _deliveries(db, urgent_id)[0].next_attempt_at == LATE
    assert _deliveries(db, day_id)[0].next_attempt_at == NOON


def test_quiet_hours_follow_summer_time() -> None:
    settings = NotificationSettings(quiet_from=time(13, 0), quiet_until=time(14, 0))
    summer_noon = datetime(2026, 7, 1, 11, 30, tzinfo=UTC)  # 13:30 in Berlin (UTC+2)
    assert notify.in_quiet_hours(settings, summer_noon)
    assert notify.quiet_hours_end(settings, summer_noon) == datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert not notify.in_quiet_hours(settings, NOON)


def test_without_a_device_parents_get_an_email_unless_they_opted_out(db: Session) -> None:
    keeps, opted_out = make_user(db), make_user(db)
    notify.save_settings(db, opted_out.id, [], None, None, email_fallback=False)
    db.commit()

    info_id, report = _enqueue(db, [keeps, opted_out], "information")
    urgent_id, _report = _enqueue(db, [keeps], "urgent")

    assert report.email == 1 and report.without_device == 2
    emails = {(e.message_id, e.user_id): e.digest for e in db.scalars(select(EmailDelivery))}
    assert emails == {(info_id, keeps.id): True, (urgent_id, keeps.id): False}


def test_cancel_skips_pending_push_and_email(db: Session) -> None:
    with_device, without = make_user(db), make_user(db)
    _subscribe(db, with_device)
    message_id, _report = _enqueue(db, [with_device, without])

    assert notify.cancel(db, message_id) == 2
    db.commit()
    assert [r.status for r in _deliveries(db, message_id)] == [DeliveryStatus.SKIPPED]
    assert db.scalars(select(EmailDelivery.status)).all() == [DeliveryStatus.SKIPPED]
    assert notify.cancel(db, message_id) == 0


@pytest.mark.parametrize(
    ("muted", "quiet_from", "quiet_until", "field"),
    [
        (["urgent"], None, None, "muted"),
        (["gossip"], None, None, "muted"),
        ([], time(22, 0), None, "quiet_until"),
        ([], None, time(7, 0), "quiet_from"),
        ([], time(7, 0), time(7, 0), "quiet_until"),
    ],
)
def test_settings_are_validated(
    db: Session, muted: list[str], quiet_from: time | None, quiet_until: time | None, field: str
) -> None:
    user = make_user(db)
    with pytest.raises(ValidationError) as raised:
        notify.save_settings(db, user.id, muted, quiet_from, quiet_until, True)
    assert field in raised.value.fields
    assert db.get(NotificationSettings, user.id) is None


def test_settings_default_and_round_trip(db: Session) -> None:
    user = make_user(db)
    default = notify.get_settings(db, user.id)
    assert (default.muted_categories, default.quiet_from, default.email_fallback) == (
        [],
        None,
        True,
    )
    notify.save_settings(db, user.id, ["event", "health"], time(21, 15), time(6, 45), False)
    db.commit()
    db.expire_all()
    saved = notify.get_settings(db, user.id)
    assert saved.muted_categories == ["event", "health"]
    assert (saved.quiet_from, saved.quiet_until, saved.email_fallback) == (
        time(21, 15),
        time(6, 45),
        False,
    )


def test_enqueue_refuses_links_outside_the_app_and_unknown_categories(db: Session) -> None:
    for category, url in (("information", "https://evil.example/x"), ("gossip", "/messages/a/1")):
        with pytest.raises(ValueError, match=r"."):
            notify.enqueue(
                db,
                message_id=uuid.uuid4(),
                kind="announcement",
                category=category,
                recipients=[],
                url=url,
                now=NOON,
            )


def test_titles_hold_no_placeholders_and_fit_a_push() -> None:
    for category in notify.TITLES:
        for locale in ("de", "tr", "ar", "uk", "xx"):
            title = notify.generic_title(category, locale)
            assert 0 < len(title) <= 120 and "%" not in title and "{" not in title
    assert timedelta(seconds=notify.TTL_SECONDS["urgent"]) == timedelta(days=1)
