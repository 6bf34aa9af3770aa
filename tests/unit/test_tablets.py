"""Tablet services without HTTP: the PIN rules (a property test), and the outbox key, which is
stored encrypted, bound to its row, and gone with the tablet's data key."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from kita.access import load_actor
from kita.crypto import DecryptionError, KeyNotFoundError
from kita.errors import ValidationError
from kita.models.accounts import Role
from kita.models.messaging import TabletOutboxKey
from kita.services import tablets
from tests.factories import make_kita, make_user


def _accepted(pin: str) -> bool:
    try:
        tablets.check_pin(pin)
    except ValidationError:
        return False
    return True


@given(st.text(max_size=12))
def test_only_four_to_eight_ascii_digits_are_accepted(pin: str) -> None:
    if _accepted(pin):
        assert pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 8


@given(st.sampled_from("0123456789"), st.integers(min_value=4, max_value=8))
def test_repeated_digits_are_refused(digit: str, length: int) -> None:
    assert not _accepted(digit * length)


@given(st.integers(min_value=0, max_value=9), st.integers(min_value=4, max_value=8), st.booleans())
def test_runs_up_and_down_are_refused(start: int, length: int, down: bool) -> None:
    step = -1 if down else 1
    pin = "".join(str((start + step * i) % 10) for i in range(length))
    assert not _accepted(pin)


@given(st.text(alphabet="0123456789", min_size=2, max_size=4), st.integers(2, 4))
def test_repeated_patterns_are_refused(unit: str, times: int) -> None:
    pin = unit * times
    if 4 <= len(pin) <= 8:
        assert not _accepted(pin)


def test_most_pins_are_accepted() -> None:
    four = ["".join(p) for p in itertools.product("0123456789", repeat=4)]
    accepted = [pin for pin in four if _accepted(pin)]
    # Weak ones are few: the rule does not shrink the space much.
    assert 9500 < len(accepted) < 9800


def test_the_outbox_key_is_encrypted_bound_and_shredded_with_the_tablet(
    app: Flask, db: Session
) -> None:
    keys = app.extensions["kita"].keys
    kita = make_kita(db)
    leader = make_user(db, roles=[(kita, Role.LEADER)])
    educator = make_user(db, roles=[(kita, Role.EDUCATOR)])
    now = datetime.now(UTC)
    first = tablets.pair_tablet(
        db, actor=load_actor(db, leader), kita=kita, name="A", lock_minutes=None, now=now
    ).tablet
    second = tablets.pair_tablet(
        db, actor=load_actor(db, leader), kita=kita, name="B", lock_minutes=3, now=now
    ).tablet
    mine = tablets.outbox_key(db, keys, tablet=first, user=educator)
    assert len(mine) == 32
    assert tablets.outbox_key(db, keys, tablet=first, user=educator) == mine
    assert tablets.outbox_key(db, keys, tablet=first, user=leader) != mine
    assert tablets.outbox_key(db, keys, tablet=second, user=educator) != mine
    db.commit()
    rows = {(row.tablet_id, row.user_id): row for row in db.scalars(select(TabletOutboxKey)).all()}
    assert all(mine not in row.key_ct for row in rows.values())
    # A ciphertext copied to another person's row does not decrypt.
    rows[(first.id, leader.id)].key_ct = rows[(first.id, educator.id)].key_ct
    db.flush()
    with pytest.raises(DecryptionError):
        tablets.outbox_key(db, keys, tablet=first, user=leader)
    db.rollback()
    tablets.revoke_tablet(db, actor=load_actor(db, leader), tablet=first, keys=keys, now=now)
    db.commit()
    assert (
        db.scalars(select(TabletOutboxKey).where(TabletOutboxKey.tablet_id == first.id)).all() == []
    )
    with pytest.raises(KeyNotFoundError):
        keys.data_key(first.id, "general", create=False)
    # The other tablet's outboxes are untouched.
    assert len(tablets.outbox_key(db, keys, tablet=second, user=educator)) == 32
    assert tablets.lock_minutes(second, 5) == 3 and tablets.lock_minutes(first, 5) == 5
