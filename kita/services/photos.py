"""Photos of documentation entries: checked, re-encoded, encrypted, stored as blobs, and served
only through the access policy.

An upload is accepted when Pillow, restricted to the JPEG, PNG and WebP decoders, can read it
(the file's signature decides; its name and Content-Type are never consulted), it has at most
10 MB and 40 megapixels, and it decodes completely. It is then re-encoded as a fresh JPEG of at
most 1600 px on the long side, after applying the EXIF orientation, from pixels only, so no EXIF,
GPS, XMP, ICC profile or comment of the original survives. The JPEG is encrypted with the child's
data key (associated data naming the photo row) and written to the blob store under a random
content id. Photo ids are made by the client, so a retried upload stores nothing twice.
"""

from __future__ import annotations

import io
import logging
import math
import uuid
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime

from flask_babel import lazy_gettext as _l
from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kita import audit
from kita.access import Actor, get_documentation_entry, get_documentation_photo
from kita.blobs import BlobStore
from kita.crypto import KeyService
from kita.errors import ValidationError
from kita.models.documentation import ConsentPurpose, DocumentationEntry, DocumentationPhoto
from kita.services.consent import require_consent
from kita.services.documentation import decrypt_for_child, encrypt_for_child, record_read

MAX_PHOTOS_PER_ENTRY = 10
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000
MAX_EDGE = 1600
JPEG_QUALITY = 85
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")

_TABLE, _COLUMN = "documentation_photos", "blob"

# Pillow's DEBUG log prints EXIF values (names, descriptions, GPS) of every image it parses:
# never let it below INFO, whatever the logging configuration says for the root logger.
_PIL_LOG = logging.getLogger("PIL")
if _PIL_LOG.level < logging.INFO:  # NOTSET (0) would inherit the root logger's DEBUG
    _PIL_LOG.setLevel(logging.INFO)


@dataclass(frozen=True)
class ProcessedPhoto:
    """A re-encoded JPEG without metadata."""

    data: bytes
    width: int
    height: int


def _rejected(message: object) -> ValidationError:
    return ValidationError({"file": message}, message)


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels; transparency is laid on white (JPEG has no alpha)."""
    if image.mode == "RGB":
        return image
    if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def normalise_image(data: bytes) -> ProcessedPhoto:
    """Check an upload and re-encode it (see the module docstring). Raises ``ValidationError``
    with a ``file`` field error for anything that is not an acceptable photo."""
    if not data:
        raise _rejected(_l("Please choose a photo."))
    if len(data) > MAX_UPLOAD_BYTES:
        raise _rejected(_l("The photo is larger than 10 MB. Please choose a smaller one."))
    unreadable = _l("This file is not a photo we can read. Please upload a JPEG, PNG or WebP.")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb guard warns before it refuses: treat its warning as a refusal.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
                width, height = image.size
                if width < 1 or height < 1:
                    raise _rejected(unreadable)
                if width * height > MAX_PIXELS:
                    raise _rejected(
                        _l("The photo has more than 40 megapixels. Please choose a smaller one.")
                    )
                long_edge = max(width, height)
                if image.format == "JPEG" and long_edge > MAX_EDGE:
                    # Decode big JPEGs at a reduced scale (at least the target size): much faster.
                    factor = MAX_EDGE / long_edge
                    image.draft("RGB", (math.ceil(width * factor), math.ceil(height * factor)))
                image.load()
                oriented = ImageOps.exif_transpose(image)
                rgb = _to_rgb(oriented)
                rgb.thumbnail((MAX_EDGE, MAX_EDGE), Image.Resampling.LANCZOS)
                # A new image from pixels only: no info dict, hence no EXIF, XMP, ICC or comment.
                clean = Image.new("RGB", rgb.size)
                clean.paste(rgb)
    except ValidationError:
        raise
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        TypeError,
        IndexError,
        KeyError,
        MemoryError,
    ):
        raise _rejected(unreadable) from None
    out = io.BytesIO()
    clean.save(out, "JPEG", quality=JPEG_QUALITY)
    return ProcessedPhoto(out.getvalue(), clean.width, clean.height)


def add_photo(
    db: Session,
    *,
    actor: Actor,
    keys: KeyService,
    blobs: BlobStore,
    entry_id: uuid.UUID,
    photo_id: uuid.UUID,
    data: bytes,
    now: datetime | None = None,
) -> tuple[DocumentationPhoto, bool]:
    """Attach a photo (id made by the client) to an entry; returns it and whether it is new.

    - 404 unless the actor may write the entry (staff of the child);
    - 403 without the family's "documentation" and "photos_in_documentation" consents;
    - 422 (field ``file``) for a file that is not an acceptable photo, and at 10 photos;
    - a photo id that already exists for this entry returns that photo unchanged (a retried
      upload); for another entry it is a field error on ``photo_id``.
    """
    now = now or datetime.now(UTC)
    entry, _scope = get_documentation_entry(db, actor, entry_id, write=True, now=now)
    existing = db.get(DocumentationPhoto, photo_id)
    if existing is not None:
        if existing.entry_id != entry.id:
            raise ValidationError({"photo_id": _l("This photo id is already in use.")})
        return existing, False
    require_consent(db, entry.child, ConsentPurpose.DOCUMENTATION)
    require_consent(db, entry.child, ConsentPurpose.PHOTOS_IN_DOCUMENTATION)
    photo = normalise_image(data)
    # Lock the entry so two uploads at once cannot both be the tenth photo.
    db.execute(
        select(DocumentationEntry.id).where(DocumentationEntry.id == entry.id).with_for_update()
    )
    count = db.scalar(select(func.count()).where(DocumentationPhoto.entry_id == entry.id))
    if (count or 0) >= MAX_PHOTOS_PER_ENTRY:
        raise _rejected(
            _l("An entry can have at most %(count)d photos.", count=MAX_PHOTOS_PER_ENTRY)
        )
    ciphertext, key_version = encrypt_for_child(
        keys,
        child_id=entry.child_id,
        kita_id=entry.kita_id,
        table=_TABLE,
        column=_COLUMN,
        row_id=photo_id,
        plaintext=photo.data,
    )
    blob_id = blobs.put(ciphertext)
    row = DocumentationPhoto(
        id=photo_id,
        entry_id=entry.id,
        child_id=entry.child_id,
        kita_id=entry.kita_id,
        blob_id=blob_id,
        key_version=key_version,
        width=photo.width,
        height=photo.height,
        byte_size=len(photo.data),
        uploaded_by_id=actor.id,
        created_at=now,
    )
    try:
        with db.begin_nested():
            db.add(row)
            db.flush()
    except IntegrityError:
        # The same upload arrived twice at once and the other one won.
        blobs.delete(blob_id)
        winner = db.get(DocumentationPhoto, photo_id)
        if winner is None or winner.entry_id != entry.id:
            raise ValidationError({"photo_id": _l("This photo id is already in use.")}) from None
        return winner, False
    audit.record(
        db,
        action="documentation.photo_added",
        actor_id=actor.id,
        object_type="documentation_entry",
        object_id=entry.id,
        kita_id=entry.kita_id,
        detail=f"photo={photo_id}",
        at=now,
    )
    return row, True


def load_photo_bytes(keys: KeyService, blobs: BlobStore, photo: DocumentationPhoto) -> bytes:
    """The decrypted JPEG. NO access check and NO audit: for exports whose caller checked
    access and records ``documentation.export``."""
    return decrypt_for_child(
        keys,
        child_id=photo.child_id,
        kita_id=photo.kita_id,
        table=_TABLE,
        column=_COLUMN,
        row_id=photo.id,
        ciphertext=blobs.get(photo.blob_id),
        key_version=photo.key_version,
    )


def read_photo(
    db: Session,
    *,
    actor: Actor,
    keys: KeyService,
    blobs: BlobStore,
    photo_id: uuid.UUID,
    now: datetime | None = None,
) -> bytes:
    """The photo as JPEG bytes for someone who may read its entry (audited as
    ``documentation.photo_read``); 404 for everyone else, exactly as for the entry."""
    photo, entry, scope = get_documentation_photo(db, actor, photo_id, now=now)
    data = load_photo_bytes(keys, blobs, photo)
    record_read(
        db,
        actor=actor,
        child=entry.child,
        action="documentation.photo_read",
        scope=scope,
        detail=f"photo={photo.id}",
        now=now,
    )
    return data


def blob_ids_for_child(db: Session, child_id: uuid.UUID) -> list[str]:
    """Content ids of every photo of the child (for shredding: delete these blobs after the
    rows are gone)."""
    return list(
        db.scalars(
            select(DocumentationPhoto.blob_id).where(DocumentationPhoto.child_id == child_id)
        )
    )
