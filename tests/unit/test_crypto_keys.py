"""Master keys, the keystore and KeyService: creation, shredding, rotation and retirement."""

from __future__ import annotations

import os
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kita.crypto import (
    Context,
    DataKey,
    DecryptionError,
    KeyKind,
    KeyNotFoundError,
    Keyring,
    KeyringError,
    KeyService,
    RetireRefusedError,
    SqliteKeystore,
    WrappedKey,
    create_master_key,
    decrypt,
    encrypt,
    ensure_master_key,
    generate_master_key_value,
    load_master_keys,
    unwrap_data_key,
    wrap_data_key,
)
from kita.crypto.keyring import encode_master_key

KITA = uuid.uuid4()


class Stop(Exception):
    """Raised by a progress callback to kill a rotation midway."""


_open_stores: list[SqliteKeystore] = []


def keystore(path: Path) -> SqliteKeystore:
    """A keystore that is closed after the test."""
    store = SqliteKeystore(path)
    _open_stores.append(store)
    return store


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    while _open_stores:
        _open_stores.pop().close()


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    create_master_key(path)
    return path


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "keystore.sqlite3"


def new_service(
    key_dir: Path,
    store_path: Path,
    *,
    cache_ttl: float = 60.0,
    cache_size: int = 4096,
) -> KeyService:
    """A service as a fresh process would build it: nothing cached, keys read from disk."""
    store = keystore(store_path)
    return KeyService(Keyring(key_dir), store, cache_ttl=cache_ttl, cache_size=cache_size)


def context_for(subject: uuid.UUID, row: uuid.UUID, key: DataKey) -> Context:
    return Context(
        purpose="observation",
        table="observations",
        column="text",
        row_id=row,
        subject_id=subject,
        kita_id=KITA,
        key_version=key.version,
    )


def seal_for(service: KeyService, subject: uuid.UUID, text: bytes) -> tuple[uuid.UUID, bytes]:
    row = uuid.uuid4()
    key = service.data_key(subject, KeyKind.GENERAL)
    return row, encrypt(key, text, context_for(subject, row, key))


def open_for(service: KeyService, subject: uuid.UUID, row: uuid.UUID, blob: bytes) -> bytes:
    key = service.data_key(subject, KeyKind.GENERAL, create=False)
    return decrypt(key, blob, context_for(subject, row, key))


def files_bytes(store_path: Path) -> bytes:
    parts = [store_path, Path(f"{store_path}-wal")]
    return b"".join(path.read_bytes() for path in parts if path.exists())


# --- master keys -------------------------------------------------------------------------------


def test_master_key_files_are_created_0600_in_a_0700_directory(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    first = create_master_key(key_dir)
    second = create_master_key(key_dir)
    assert (first.version, second.version) == (1, 2)
    assert first.key != second.key
    assert stat.S_IMODE((key_dir / "kek-1.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((key_dir / "kek-2.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    assert sorted(os.listdir(key_dir)) == ["kek-1.key", "kek-2.key"]  # no temporary files left
    keyring = Keyring(key_dir)
    assert keyring.versions == (1, 2)
    assert keyring.primary == second
    assert keyring.get(1) == first


def test_create_master_key_refuses_to_overwrite(key_dir: Path) -> None:
    before = (key_dir / "kek-1.key").read_bytes()
    with pytest.raises(KeyringError, match="refusing to overwrite"):
        create_master_key(key_dir, version=1)
    assert (key_dir / "kek-1.key").read_bytes() == before
    assert ensure_master_key(key_dir) is None  # `kita init` is safe to repeat
    assert sorted(os.listdir(key_dir)) == ["kek-1.key"]


def test_ensure_master_key_creates_the_first_key(tmp_path: Path) -> None:
    created = ensure_master_key(tmp_path / "keys")
    assert created is not None
    assert created.version == 1
    assert Keyring(tmp_path / "keys").primary == created


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610])
def test_key_files_accessible_to_group_or_others_are_refused(key_dir: Path, mode: int) -> None:
    (key_dir / "kek-1.key").chmod(mode)
    with pytest.raises(KeyringError, match="chmod 600"):
        Keyring(key_dir)
    (key_dir / "kek-1.key").chmod(0o600)
    assert Keyring(key_dir).versions == (1,)


def test_malformed_key_files_are_refused(key_dir: Path) -> None:
    path = key_dir / "kek-2.key"
    path.write_text("not base64 at all!\n")
    path.chmod(0o600)
    with pytest.raises(KeyringError, match="base64url"):
        Keyring(key_dir)
    path.write_text(encode_master_key(b"\x01" * 16))
    with pytest.raises(KeyringError, match="32 bytes"):
        Keyring(key_dir)


def test_environment_key_is_version_1(tmp_path: Path) -> None:
    value = generate_master_key_value()
    keyring = Keyring(None, env_value=value)
    assert keyring.versions == (1,)
    assert keyring.primary.source == "environment"
    assert encode_master_key(keyring.primary.key) == value
    with pytest.raises(KeyringError, match="KITA_MASTER_KEY"):
        Keyring(None, env_value="dG9vIHNob3J0")
    with pytest.raises(KeyringError, match="needs a key directory"):
        keyring.create_version()
    # A key directory beside it must agree on version 1.
    create_master_key(tmp_path / "keys")
    with pytest.raises(KeyringError, match="differs"):
        load_master_keys(tmp_path / "keys", value)


def test_no_master_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="kita init"):
        Keyring(tmp_path / "empty")
    with pytest.raises(KeyringError, match="kita init"):
        Keyring(None)


def test_wrapped_data_keys_are_bound_to_subject_kind_and_version(key_dir: Path) -> None:
    kek = Keyring(key_dir).primary
    subject = str(uuid.uuid4())
    key = DataKey(os.urandom(32), 1, subject, "general")
    wrapped = wrap_data_key(kek, key)
    assert key.key not in wrapped
    assert unwrap_data_key(kek, wrapped, subject_id=subject, kind="general", version=1) == key
    for subject_id, kind, version in [
        (str(uuid.uuid4()), "general", 1),
        (subject, "health", 1),
        (subject, "general", 2),
    ]:
        with pytest.raises(DecryptionError):
            unwrap_data_key(kek, wrapped, subject_id=subject_id, kind=kind, version=version)
    other_kek = create_master_key(key_dir)
    with pytest.raises(DecryptionError):
        unwrap_data_key(other_kek, wrapped, subject_id=subject, kind="general", version=1)


# --- data keys and the cache ------------------------------------------------------------------


def test_data_keys_per_subject_and_kind(key_dir: Path, store_path: Path) -> None:
    service = new_service(key_dir, store_path)
    child, conversation = uuid.uuid4(), uuid.uuid4()
    general = service.data_key(child, KeyKind.GENERAL)
    health = service.data_key(str(child).upper(), "health")
    talk = service.data_key(conversation, KeyKind.CONVERSATION)
    assert len({general.key, health.key, talk.key}) == 3
    assert (general.subject_id, general.kind, general.version) == (str(child), "general", 1)
    assert general.id == f"{child}:general:1"
    # Another process reads the same keys from the keystore.
    other = new_service(key_dir, store_path)
    assert other.data_key(child, KeyKind.GENERAL, create=False) == general
    assert other.data_key(child, KeyKind.HEALTH, create=False) == health
    assert other.status().data_keys == {1: 3}
    with pytest.raises(KeyNotFoundError):
        other.data_key(uuid.uuid4(), KeyKind.GENERAL, create=False)
    assert other.status().data_keys == {1: 3}  # create=False created nothing
    with pytest.raises(ValueError, match="photos"):
        other.data_key(child, "photos")
    with pytest.raises(ValueError, match="UUID"):
        other.data_key("child-1", KeyKind.GENERAL)


def test_keystore_holds_only_wrapped_keys(key_dir: Path, store_path: Path) -> None:
    service = new_service(key_dir, store_path)
    keys = [service.data_key(uuid.uuid4(), KeyKind.HEALTH) for _ in range(20)]
    stored = files_bytes(store_path)
    assert all(key.key not in stored for key in keys)
    assert all(key.key.hex().encode() not in stored for key in keys)
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600


def test_concurrent_creation_yields_one_key(key_dir: Path, store_path: Path) -> None:
    subject = uuid.uuid4()
    services = [new_service(key_dir, store_path) for _ in range(8)]
    results: list[DataKey] = []
    barrier = threading.Barrier(len(services))

    def create(service: KeyService) -> None:
        barrier.wait()
        results.append(service.data_key(subject, KeyKind.GENERAL))

    threads = [threading.Thread(target=create, args=(service,)) for service in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert len({key.key for key in results}) == 1
    assert services[0].status().data_keys == {1: 1}


def test_keystore_add_keeps_the_first_key(store_path: Path) -> None:
    store = keystore(store_path)
    subject = str(uuid.uuid4())
    first = WrappedKey(subject, "general", 1, 1, b"first")
    assert store.add(first) == first
    assert store.add(WrappedKey(subject, "general", 1, 1, b"second")) == first
    assert store.get(subject, "general") == first


def test_update_wrapping_never_resurrects_a_shredded_key(store_path: Path) -> None:
    store = keystore(store_path)
    subject = str(uuid.uuid4())
    old = store.add(WrappedKey(subject, "general", 1, 1, b"old"))
    store.delete_subject(subject)
    assert store.update_wrapping([(old, WrappedKey(subject, "general", 1, 2, b"new"))]) == 0
    assert store.get(subject, "general") is None
    assert store.count_by_kek_version() == {}


def test_swapped_wrapped_keys_do_not_unwrap(key_dir: Path, store_path: Path) -> None:
    """Someone with write access to the keystore cannot give one child another's key."""
    service = new_service(key_dir, store_path)
    first, second = uuid.uuid4(), uuid.uuid4()
    service.data_key(first, KeyKind.GENERAL)
    service.data_key(second, KeyKind.GENERAL)
    store = keystore(store_path)
    a, b = store.get(str(first), "general"), store.get(str(second), "general")
    assert a is not None
    assert b is not None
    store.update_wrapping(
        [(a, WrappedKey(a.subject_id, a.kind, a.version, a.kek_version, b.wrapped))]
    )
    with pytest.raises(DecryptionError):
        new_service(key_dir, store_path).data_key(first, KeyKind.GENERAL, create=False)


def test_cache_expires_and_is_bounded(key_dir: Path, store_path: Path) -> None:
    now = [1000.0]
    service = new_service(key_dir, store_path, cache_ttl=60.0, cache_size=3)
    service._clock = lambda: now[0]  # a fake clock for the test
    subject = uuid.uuid4()
    key = service.data_key(subject, KeyKind.GENERAL)
    # Shredded by another process: this one keeps the key only until the cache entry expires.
    new_service(key_dir, store_path).shred(subject)
    now[0] += 59
    assert service.data_key(subject, KeyKind.GENERAL, create=False) == key
    now[0] += 2
    with pytest.raises(KeyNotFoundError):
        service.data_key(subject, KeyKind.GENERAL, create=False)
    for _ in range(10):
        service.data_key(uuid.uuid4(), KeyKind.GENERAL)
    assert len(service._cache) == 3


# --- shredding ---------------------------------------------------------------------------------


def test_shredding_makes_the_subjects_data_unreadable_and_purges_the_files(
    key_dir: Path, store_path: Path
) -> None:
    service = new_service(key_dir, store_path)
    children = [uuid.uuid4() for _ in range(5)]
    sealed = {child: seal_for(service, child, f"entry of {child}".encode()) for child in children}
    service.data_key(children[0], KeyKind.HEALTH)
    store = keystore(store_path)
    doomed = [store.get(str(children[0]), kind) for kind in ("general", "health")]
    assert all(item is not None for item in doomed)
    wrapped = [item.wrapped for item in doomed if item is not None]
    assert all(blob in files_bytes(store_path) for blob in wrapped)  # the check below can fail

    assert service.shred(children[0]) == 2
    assert service.shred(children[0]) == 0  # safe to repeat

    raw = files_bytes(store_path)
    assert all(blob not in raw for blob in wrapped)
    assert all(blob[20:] not in raw for blob in wrapped)  # not even the ciphertext part
    for path in (store_path, Path(f"{store_path}-wal")):
        assert not path.exists() or all(blob[20:] not in path.read_bytes() for blob in wrapped)
    for current in (service, new_service(key_dir, store_path)):
        with pytest.raises(KeyNotFoundError):
            open_for(current, children[0], *sealed[children[0]])
        for child in children[1:]:
            assert open_for(current, child, *sealed[child]) == f"entry of {child}".encode()
    assert service.status().data_keys == {1: 4}


def test_a_new_key_after_shredding_cannot_read_old_data(key_dir: Path, store_path: Path) -> None:
    service = new_service(key_dir, store_path)
    child = uuid.uuid4()
    row, blob = seal_for(service, child, b"old entry")
    service.shred(child)
    fresh = service.data_key(child, KeyKind.GENERAL)  # e.g. a write racing the shred
    with pytest.raises(DecryptionError):
        decrypt(fresh, blob, context_for(child, row, fresh))


# --- rotation and retirement -------------------------------------------------------------------


def test_rotation_over_2000_subjects_killed_midway_and_resumed(
    key_dir: Path, store_path: Path
) -> None:
    service = new_service(key_dir, store_path)
    children = [uuid.uuid4() for _ in range(2000)]
    sealed = {child: seal_for(service, child, child.bytes) for child in children}
    store = keystore(store_path)
    before = {child: store.get(str(child), "general") for child in children}
    assert service.status().data_keys == {1: 2000}

    seen: list[tuple[int, int]] = []

    def killed_after_half(done: int, total: int) -> None:
        seen.append((done, total))
        if done >= 1000:
            raise Stop

    with pytest.raises(Stop):
        service.rotate(killed_after_half, batch_size=250)
    assert seen[0] == (0, 2000)
    assert seen[-1] == (1000, 2000)
    halfway = service.status()
    assert halfway.primary == 2
    assert halfway.data_keys == {1: 1000, 2: 1000}
    assert halfway.pending == 1000
    with pytest.raises(RetireRefusedError, match="1000 data keys"):
        service.retire(1)

    # A new process resumes: no third version, the remaining keys rewrapped.
    resumed = new_service(key_dir, store_path)
    progress: list[tuple[int, int]] = []
    result = resumed.rotate(lambda done, total: progress.append((done, total)), batch_size=250)
    assert (result.kek_version, result.created, result.rewrapped) == (2, False, 1000)
    assert progress[0] == (0, 1000)
    assert progress[-1] == (1000, 1000)
    assert sorted(os.listdir(key_dir)) == ["kek-1.key", "kek-2.key"]
    final = resumed.status()
    assert final.data_keys == {2: 2000}
    assert final.pending == 0
    assert final.retirable == (1,)

    after = {child: store.get(str(child), "general") for child in children}
    for child in children:
        old, new = before[child], after[child]
        assert old is not None
        assert new is not None
        assert (new.kek_version, old.kek_version) == (2, 1)
        assert new.wrapped != old.wrapped
    # Retire version 1, then a third process (only version 2 on disk) reads everything.
    resumed.retire(1)
    assert sorted(os.listdir(key_dir)) == ["kek-2.key"]
    reader = new_service(key_dir, store_path)
    assert all(open_for(reader, child, *sealed[child]) == child.bytes for child in children)
    # A rotation with nothing pending makes a new version.
    assert reader.rotate().kek_version == 3


def test_rotation_rewraps_keys_made_by_a_process_with_a_stale_keyring(
    key_dir: Path, store_path: Path
) -> None:
    stale = new_service(key_dir, store_path)
    first = uuid.uuid4()
    stale.data_key(first, KeyKind.GENERAL)
    admin = new_service(key_dir, store_path)
    assert admin.rotate().kek_version == 2
    # The old process still believes version 1 is primary, but wraps new keys with version 2.
    second = uuid.uuid4()
    stale.data_key(second, KeyKind.GENERAL)
    assert admin.status().data_keys == {2: 2}


def test_rotate_without_resume_always_creates_a_version(key_dir: Path, store_path: Path) -> None:
    service = new_service(key_dir, store_path)
    for _ in range(5):
        service.data_key(uuid.uuid4(), KeyKind.GENERAL)

    def stop_after_first_batch(done: int, total: int) -> None:
        if done:
            raise Stop

    with pytest.raises(Stop):
        service.rotate(stop_after_first_batch, batch_size=2)
    assert service.status().data_keys == {1: 3, 2: 2}
    result = service.rotate(resume=False)
    assert (result.kek_version, result.created, result.rewrapped) == (3, True, 5)
    assert service.status().data_keys == {3: 5}
    assert service.rewrap().rewrapped == 0  # idempotent


def test_retire_refuses_while_needed(key_dir: Path, store_path: Path) -> None:
    service = new_service(key_dir, store_path)
    child = uuid.uuid4()
    row, blob = seal_for(service, child, b"entry")
    with pytest.raises(RetireRefusedError, match="primary"):
        service.retire(1)
    with pytest.raises(RetireRefusedError, match="does not exist"):
        service.retire(7)
    service.keyring.create_version()  # a new primary, but the rewrap has not run
    with pytest.raises(RetireRefusedError, match="1 data keys"):
        service.retire(1)
    assert (key_dir / "kek-1.key").exists()
    service.rewrap()
    service.retire(1)
    assert not (key_dir / "kek-1.key").exists()
    assert service.status().kek_versions == (2,)
    assert open_for(new_service(key_dir, store_path), child, row, blob) == b"entry"


def test_retire_refuses_when_a_key_appears_at_the_last_moment(
    key_dir: Path, store_path: Path
) -> None:
    service = new_service(key_dir, store_path)
    service.keyring.create_version()
    store = keystore(store_path)

    def a_key_wrapped_meanwhile() -> int:
        store.add(WrappedKey(str(uuid.uuid4()), "general", 1, 1, b"x"))
        return store.count_by_kek_version().get(1, 0)

    with pytest.raises(RetireRefusedError, match="just wrapped"):
        service.keyring.destroy_version(1, still_needed=a_key_wrapped_meanwhile)
    assert (key_dir / "kek-1.key").exists()
    assert service.keyring.versions == (1, 2)


def test_retire_refuses_the_environment_key(tmp_path: Path, store_path: Path) -> None:
    key_dir = tmp_path / "keys"
    keyring = Keyring(key_dir, env_value=generate_master_key_value())
    service = KeyService(keyring, keystore(store_path))
    service.data_key(uuid.uuid4(), KeyKind.GENERAL)
    result = service.rotate()
    assert (result.kek_version, result.rewrapped) == (2, 1)
    assert sorted(os.listdir(key_dir)) == ["kek-2.key"]
    status = service.status()
    assert status.sources == {1: "environment", 2: "file"}
    assert status.retirable == ()
    with pytest.raises(RetireRefusedError, match="environment"):
        service.retire(1)


def test_status_reports_missing_master_keys(key_dir: Path, store_path: Path) -> None:
    service = new_service(key_dir, store_path)
    keystore(store_path).add(WrappedKey(str(uuid.uuid4()), "general", 1, 9, b"x"))
    status = service.status()
    assert status.missing == (9,)
    assert status.pending == 1
    with pytest.raises(KeyringError, match="version 9"):
        service.rewrap()
