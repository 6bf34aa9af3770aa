"""Announcement services without HTTP: upload checks, content validation, the access
predicates for audiences."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin
from sqlalchemy.orm import Session

from kita.access import (
    load_actor,
    may_announce_to_child,
    may_announce_to_group,
    may_announce_to_kita,
    may_send_announcements,
)
from kita.errors import ValidationError
from kita.models.accounts import Role
from kita.services import announcements
from kita.services.announcements import AnnouncementInput, Audience, Upload
from tests.factories import make_child, make_group, make_kita, make_provider, make_user

SIGNATURES = (b"%PDF-", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


@given(st.binary(max_size=64))
def test_anything_without_a_known_signature_is_refused(data: bytes) -> None:
    if data.startswith(SIGNATURES):
        return
    with pytest.raises(ValidationError) as refused:
        announcements.check_uploads([Upload("datei.pdf", data or b"x")])
    assert "is not a PDF, JPEG or PNG file" in str(refused.value.fields["attachments"])


def test_pdf_is_kept_and_an_image_becomes_a_jpeg_without_metadata() -> None:
    png = io.BytesIO()
    image = Image.new("RGB", (20, 10), "blue")
    image.save(png, "PNG", pnginfo=_text_chunk("Author", "Familie Muster"))
    checked = announcements.check_uploads(
        [
            Upload("C:\\Users\\x\\Einladung.pdf", b"%PDF-1.7 hallo"),
            Upload("foto.png", png.getvalue()),
        ]
    )
    assert [(c.filename, c.media_type) for c in checked] == [
        ("Einladung.pdf", "application/pdf"),
        ("foto.jpg", "image/jpeg"),
    ]
    assert checked[0].data == b"%PDF-1.7 hallo"
    assert b"Familie Muster" not in checked[1].data
    with Image.open(io.BytesIO(checked[1].data)) as decoded:
        assert decoded.size == (20, 10)


def _text_chunk(key: str, value: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(key, value)
    return info


def test_empty_file_fields_are_ignored_and_six_files_are_too_many() -> None:
    assert announcements.check_uploads([Upload("", b"")]) == []
    with pytest.raises(ValidationError, match="attachments"):
        announcements.check_uploads([Upload(f"{n}.pdf", b"%PDF-1") for n in range(6)])


def _input(**kw: object) -> AnnouncementInput:
    values: dict[str, object] = {
        "category": "event",
        "source_locale": "de",
        "audience": Audience(),
        "title": "Sommerfest",
    }
    values.update(kw)
    return AnnouncementInput(**values)  # type: ignore[arg-type]


def test_validation_names_every_problem_at_once() -> None:
    with pytest.raises(ValidationError) as refused:
        announcements._validate(
            _input(
                category="party",
                title="",
                body="x" * 5001,
                scheduled_at=NOW + timedelta(days=2),
                confirm_required=True,
                confirm_deadline=NOW + timedelta(days=1),
            ),
            NOW,
        )
    assert set(refused.value.fields) == {"category", "title", "body", "confirm_deadline"}


def test_schedule_must_be_future_and_within_a_year() -> None:
    for when in (NOW - timedelta(minutes=1), NOW + timedelta(days=400)):
        with pytest.raises(ValidationError) as refused:
            announcements._validate(_input(scheduled_at=when), NOW)
        assert set(refused.value.fields) == {"scheduled_at"}
    with pytest.raises(ValueError, match="naive"):
        announcements._validate(_input(scheduled_at=datetime(2026, 6, 1, 8, 0)), NOW)


def test_phrase_parameters_are_checked_by_the_phrasebook() -> None:
    with pytest.raises(ValidationError) as refused:
        announcements._validate(
            _input(phrase_key="parents_evening", phrase_params={"date": "morgen", "time": "25:00"}),
            NOW,
        )
    assert set(refused.value.fields) == {"param_date", "param_time"}
    content = announcements._validate(
        _input(phrase_key="parents_evening", phrase_params={"date": "2026-06-01", "time": "19:30"}),
        NOW,
    )
    assert content.phrase_params == {"date": "2026-06-01", "time": "19:30"}
    assert content.title  # rendered in the source language


def test_who_writes_to_whom(db: Session) -> None:
    provider = make_provider(db)
    kita, other = make_kita(db, provider), make_kita(db)
    mine, theirs = make_group(db, kita), make_group(db, kita)
    child_mine, child_theirs = make_child(db, mine), make_child(db, theirs)
    educator = load_actor(db, make_user(db, roles=[(kita, Role.EDUCATOR)], groups=[mine]))
    leader = load_actor(db, make_user(db, roles=[(kita, Role.LEADER)]))
    admin = load_actor(db, make_user(db, admin_of=provider))
    caretaker = load_actor(db, make_user(db, roles=[(kita, Role.CARETAKER)]))
    parent = load_actor(db, make_user(db, roles=[(kita, Role.PARENT)], children=[child_mine]))
    assert may_announce_to_group(educator, mine)
    assert may_announce_to_child(educator, child_mine)
    assert not may_announce_to_group(educator, theirs)
    assert not may_announce_to_child(educator, child_theirs)
    assert not may_announce_to_kita(educator, kita)
    assert may_announce_to_kita(leader, kita) and not may_announce_to_kita(leader, other)
    assert may_announce_to_kita(admin, kita) and not may_announce_to_kita(admin, other)
    for actor in (educator, leader, admin):
        assert may_send_announcements(actor)
    for actor in (caretaker, parent):
        assert not may_send_announcements(actor)
        assert not may_announce_to_group(actor, mine)
