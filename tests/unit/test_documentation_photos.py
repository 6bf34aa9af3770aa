"""Photos: checked by what they are (never by name), bounded in bytes and pixels, re-encoded to a
metadata-free JPEG of at most 1600 px, encrypted into the blob store, idempotent by id, limited
to 10 per entry, consent-bound, and read only through the access policy (audited)."""

from __future__ import annotations

import io
import os
import stat
import struct
import uuid
import zlib
from pathlib import Path

import pytest
from flask import Flask
from PIL import ExifTags, Image, features
from sqlalchemy import select
from sqlalchemy.orm import Session

from kita.blobs import BlobNotFoundError, BlobStore
from kita.crypto import DecryptionError, KeyService
from kita.errors import NotFoundError, ValidationError
from kita.models.audit import AuditEvent
from kita.models.documentation import ConsentPurpose, DocumentationPhoto
from kita.services import documentation, photos
from kita.services.consent import ConsentRequiredError
from tests.unit.test_documentation import World, act, build_world, consent_to, count, save

MARKER = "PHOTO-CANARY-7f3a9c"


@pytest.fixture
def keys(app: Flask) -> KeyService:
    return app.extensions["kita"].keys  # type: ignore[no-any-return]


@pytest.fixture
def world(db: Session) -> World:
    return build_world(db)


@pytest.fixture
def consented(db: Session, world: World) -> World:
    consent_to(db, world, ConsentPurpose.DOCUMENTATION, ConsentPurpose.PHOTOS_IN_DOCUMENTATION)
    return world


def image_bytes(
    fmt: str, size: tuple[int, int] = (400, 300), mode: str = "RGB", **save: object
) -> bytes:
    image = Image.new(mode, size, "red" if mode in {"RGB", "RGBA"} else 1)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def jpeg_with_metadata(size: tuple[int, int] = (400, 300), orientation: int | None = None) -> bytes:
    """A JPEG carrying GPS coordinates, a description, a user comment and a COM comment."""
    exif = Image.Exif()
    exif[ExifTags.Base.ImageDescription] = MARKER
    exif[ExifTags.Base.Make] = "KitaCam"
    if orientation:
        exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (13.0, 24.0, 0.0),
    }
    return image_bytes("JPEG", size, exif=exif.tobytes(), comment=MARKER.encode())


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (CRC fixed, data far too short)."""
    data = bytearray(image_bytes("PNG", (1, 1), mode="L"))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def assert_clean_jpeg(data: bytes) -> Image.Image:
    assert data[:3] == b"\xff\xd8\xff"
    assert MARKER.encode() not in data and b"KitaCam" not in data and b"Exif" not in data
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    assert len(image.getexif()) == 0
    assert not {"exif", "comment", "icc_profile", "xmp"} & set(image.info)
    return image


# --- checking and re-encoding -----------------------------------------------------------------


def test_metadata_and_gps_are_stripped() -> None:
    original = jpeg_with_metadata()
    assert MARKER.encode() in original and b"Exif" in original
    assert len(Image.open(io.BytesIO(original)).getexif().get_ifd(ExifTags.IFD.GPSInfo)) == 4
    result = photos.normalise_image(original)
    image = assert_clean_jpeg(result.data)
    assert image.getexif().get_ifd(ExifTags.IFD.GPSInfo) == {}
    assert (result.width, result.height) == (400, 300)


def test_exif_orientation_is_applied_before_stripping() -> None:
    result = photos.normalise_image(jpeg_with_metadata((200, 100), orientation=6))
    assert (result.width, result.height) == (100, 200)
    assert_clean_jpeg(result.data)


def test_a_png_with_a_jpeg_name_is_accepted_and_re_encoded() -> None:
    # The service never sees a name: the bytes decide.
    result = photos.normalise_image(image_bytes("PNG", (300, 200), mode="RGBA"))
    image = assert_clean_jpeg(result.data)
    assert image.size == (300, 200) and image.mode == "RGB"


@pytest.mark.skipif(not features.check("webp"), reason="Pillow without WebP")
def test_webp_is_accepted() -> None:
    assert_clean_jpeg(photos.normalise_image(image_bytes("WEBP", (64, 48))).data)


def test_large_photos_are_scaled_to_1600_on_the_long_side() -> None:
    result = photos.normalise_image(image_bytes("JPEG", (4000, 3000)))
    assert (result.width, result.height) == (1600, 1200)
    tall = photos.normalise_image(image_bytes("PNG", (900, 2400)))
    assert (tall.width, tall.height) == (600, 1600)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "Please choose a photo"),
        (b"Hello, I am a text file named photo.jpg\n" * 10, "not a photo"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 200, "not a photo"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not a photo"),
        (image_bytes("GIF", (10, 10)), "not a photo"),
        (image_bytes("BMP", (10, 10)), "not a photo"),
        (image_bytes("JPEG", (400, 300))[:400], "not a photo"),
        (image_bytes("PNG", (8000, 6000), mode="1"), "40 megapixels"),
        (png_claiming_size(30_000, 30_000), ""),
        (png_claiming_size(0x7FFF_FFFF, 2), ""),
        (b"\xff" * (10 * 1024 * 1024 + 1), "10 MB"),
    ],
    ids=[
        "empty",
        "text",
        "jpeg-magic-only",
        "svg",
        "gif",
        "bmp",
        "truncated",
        "40mp-bomb",
        "pillow-bomb",
        "absurd-size",
        "oversized",
    ],
)
def test_unacceptable_uploads_are_refused_with_a_message(data: bytes, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        photos.normalise_image(data)
    assert set(caught.value.fields) == {"file"}
    assert message in str(caught.value.fields["file"])


# --- the blob store ---------------------------------------------------------------------------


def test_blob_store(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    blob_id = store.put(b"ciphertext")
    assert store.is_valid_id(blob_id) and store.get(blob_id) == b"ciphertext"
    path = store.path(blob_id)
    assert path.parent.name == blob_id[:2]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert list(store.ids()) == [blob_id]
    assert store.delete(blob_id) and not store.delete(blob_id)
    with pytest.raises(BlobNotFoundError):
        store.get(blob_id)
    for bad in ("../../etc/passwd", "A" * 32, blob_id + "0", ""):
        with pytest.raises(ValueError, match="content id"):
            store.path(bad)
    assert not [p for p in (tmp_path / "blobs").rglob("*.tmp")]


# --- attaching and reading --------------------------------------------------------------------


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def _entry(db: Session, keys: KeyService, w: World) -> uuid.UUID:
    return save(db, keys, w.educator, w.child, status="final").entry.id


def _add(
    db: Session,
    keys: KeyService,
    blobs: BlobStore,
    w: World,
    entry_id: uuid.UUID,
    photo_id: uuid.UUID | None = None,
    data: bytes | None = None,
    user: object = None,
) -> tuple[DocumentationPhoto, bool]:
    return photos.add_photo(
        db,
        actor=act(db, user or w.educator),  # type: ignore[arg-type]
        keys=keys,
        blobs=blobs,
        entry_id=entry_id,
        photo_id=photo_id or uuid.uuid4(),
        data=data if data is not None else jpeg_with_metadata(),
    )


def test_a_photo_is_stored_encrypted_and_read_back_clean(
    db: Session, keys: KeyService, blobs: BlobStore, consented: World
) -> None:
    w = consented
    entry_id = _entry(db, keys, w)
    photo, created = _add(db, keys, blobs, w, entry_id)
    db.commit()
    assert created and photo.child_id == w.child.id and photo.uploaded_by_id == w.educator.id
    stored = blobs.get(photo.blob_id)
    assert stored[:2] == b"KT" and b"\xff\xd8\xff" not in stored[:64]
    assert str(w.child.id) not in photo.blob_id and w.child.first_name not in photo.blob_id
    data = photos.read_photo(db, actor=act(db, w.leader), keys=keys, blobs=blobs, photo_id=photo.id)
    assert_clean_jpeg(data)
    event = db.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert event is not None
    assert (event.action, event.object_id, event.actor_id) == (
        "documentation.photo_read",
        str(w.child.id),
        w.leader.id,
    )
    view = documentation.read_entry(db, actor=act(db, w.educator), keys=keys, entry_id=entry_id)
    assert view.photo_ids == (photo.id,)


def test_a_blob_moved_to_another_photo_row_does_not_decrypt(
    db: Session, keys: KeyService, blobs: BlobStore, consented: World
) -> None:
    w = consented
    entry_id = _entry(db, keys, w)
    first, _ = _add(db, keys, blobs, w, entry_id)
    second, _ = _add(db, keys, blobs, w, entry_id)
    db.commit()
    blob_of_first = first.blob_id
    first.blob_id = "0" * 32
    db.flush()
    second.blob_id = blob_of_first
    db.commit()
    with pytest.raises(DecryptionError):
        photos.read_photo(db, actor=act(db, w.leader), keys=keys, blobs=blobs, photo_id=second.id)


def test_a_repeated_upload_stores_one_photo(
    db: Session, keys: KeyService, blobs: BlobStore, consented: World
) -> None:
    w = consented
    entry_id = _entry(db, keys, w)
    photo_id = uuid.uuid4()
    first, created = _add(db, keys, blobs, w, entry_id, photo_id)
    again, created_again = _add(db, keys, blobs, w, entry_id, photo_id)
    db.commit()
    assert created and not created_again and again.blob_id == first.blob_id
    assert count(db, DocumentationPhoto) == 1 and len(list(blobs.ids())) == 1
    other_entry = _entry(db, keys, w)
    with pytest.raises(ValidationError) as caught:
        _add(db, keys, blobs, w, other_entry, photo_id)
    assert set(caught.value.fields) == {"photo_id"}


def test_at_most_ten_photos_per_entry(
    db: Session, keys: KeyService, blobs: BlobStore, consented: World
) -> None:
    w = consented
    entry_id = _entry(db, keys, w)
    small = image_bytes("PNG", (20, 20))
    for _ in range(10):
        _add(db, keys, blobs, w, entry_id, data=small)
    db.commit()
    with pytest.raises(ValidationError) as caught:
        _add(db, keys, blobs, w, entry_id, data=small)
    assert "at most 10" in str(caught.value.fields["file"])
    db.rollback()
    assert count(db, DocumentationPhoto) == 10 and len(list(blobs.ids())) == 10


def test_a_refused_file_stores_nothing(
    db: Session, keys: KeyService, blobs: BlobStore, consented: World
) -> None:
    w = consented
    entry_id = _entry(db, keys, w)
    with pytest.raises(ValidationError):
        _add(db, keys, blobs, w, entry_id, data=b"not an image")
    db.rollback()
    assert count(db, DocumentationPhoto) == 0 and list(blobs.ids()) == []


def test_photos_need_their_own_consent(
    db: Session, keys: KeyService, blobs: BlobStore, world: World
) -> None:
    w = world
    consent_to(db, w, ConsentPurpose.DOCUMENTATION)
    entry_id = _entry(db, keys, w)
    db.commit()
    with pytest.raises(ConsentRequiredError) as caught:
        _add(db, keys, blobs, w, entry_id)
    assert caught.value.purpose is ConsentPurpose.PHOTOS_IN_DOCUMENTATION
    db.rollback()
    assert count(db, DocumentationPhoto) == 0 and list(blobs.ids()) == []


@pytest.mark.parametrize(
    "who",
    ["other_educator", "other_parent", "parent", "council", "caretaker", "admin", "other_leader"],
)
def test_only_the_childs_staff_add_photos(
    db: Session, keys: KeyService, blobs: BlobStore, consented: World, who: str
) -> None:
    w = consented
    entry_id = _entry(db, keys, w)
    with pytest.raises(NotFoundError):
        _add(db, keys, blobs, w, entry_id, user=getattr(w, who))
    assert list(blobs.ids()) == []


@pytest.mark.parametrize(
    "who", ["other_educator", "other_parent", "council", "caretaker", "admin", "other_admin"]
)
def test_outsiders_do_not_read_photos(
    db: Session, keys: KeyService, blobs: BlobStore, consented: World, who: str
) -> None:
    w = consented
    entry_id = _entry(db, keys, w)
    documentation.share_entry(db, actor=act(db, w.educator), entry_id=entry_id, shared=True)
    photo, _ = _add(db, keys, blobs, w, entry_id)
    db.commit()
    before = count(db, AuditEvent)
    with pytest.raises(NotFoundError):
        photos.read_photo(
            db, actor=act(db, getattr(w, who)), keys=keys, blobs=blobs, photo_id=photo.id
        )
    assert count(db, AuditEvent) == before


def test_the_family_sees_photos_of_shared_entries_only(
    db: Session, keys: KeyService, blobs: BlobStore, consented: World
) -> None:
    w = consented
    entry_id = _entry(db, keys, w)
    photo, _ = _add(db, keys, blobs, w, entry_id)
    db.commit()
    parent = act(db, w.parent)
    with pytest.raises(NotFoundError):
        photos.read_photo(db, actor=parent, keys=keys, blobs=blobs, photo_id=photo.id)
    documentation.share_entry(db, actor=act(db, w.educator), entry_id=entry_id, shared=True)
    assert_clean_jpeg(
        photos.read_photo(db, actor=parent, keys=keys, blobs=blobs, photo_id=photo.id)
    )
    assert photos.blob_ids_for_child(db, w.child.id) == [photo.blob_id]
