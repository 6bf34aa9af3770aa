"""Encryption of message attachments (announcements and conversation messages).

An attachment's file lives encrypted in the blob store and its filename encrypted in the
``attachments`` row. Both are bound to the attachment's row id and to the message's data key:
an announcement's key (``KeyKind.ANNOUNCEMENT``, subject = the announcement) or a
conversation's key (``KeyKind.CONVERSATION``, subject = the conversation). A file copied to
another attachment row, or to another announcement, does not decrypt.

No access checks here: callers load the attachment through ``kita.access`` first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from kita.blobs import BlobStore
from kita.crypto import Context, KeyKind, KeyService, decrypt, encrypt
from kita.models.messaging import Announcement, Attachment, Conversation

PURPOSE = "attachment"
TABLE = "attachments"
FILENAME_COLUMN = "filename_ct"
FILE_COLUMN = "blob"


@dataclass(frozen=True)
class AttachmentOwner:
    """Whose data key encrypts an attachment: the announcement or the conversation."""

    subject_id: uuid.UUID
    kind: KeyKind
    kita_id: uuid.UUID | None


def announcement_owner(announcement: Announcement) -> AttachmentOwner:
    return AttachmentOwner(announcement.id, KeyKind.ANNOUNCEMENT, announcement.kita_id)


def conversation_owner(conversation: Conversation) -> AttachmentOwner:
    return AttachmentOwner(conversation.id, KeyKind.CONVERSATION, conversation.kita_id)


@dataclass(frozen=True)
class EncryptedAttachment:
    """What to store in the ``attachments`` row (the file is already in the blob store)."""

    filename_ct: bytes
    blob_id: str
    key_version: int


def _context(owner: AttachmentOwner, row_id: uuid.UUID, column: str, version: int) -> Context:
    return Context(
        purpose=PURPOSE,
        table=TABLE,
        column=column,
        row_id=row_id,
        subject_id=owner.subject_id,
        kita_id=owner.kita_id,
        key_version=version,
    )


def encrypt_attachment(
    keys: KeyService,
    blobs: BlobStore,
    owner: AttachmentOwner,
    *,
    attachment_id: uuid.UUID,
    filename: str,
    data: bytes,
) -> EncryptedAttachment:
    """Encrypt the file into the blob store and the filename for the row ``attachment_id``
    (a UUID made before the insert). The message's data key is created on first use."""
    key = keys.data_key(owner.subject_id, owner.kind)
    file_ct = encrypt(key, data, _context(owner, attachment_id, FILE_COLUMN, key.version))
    name_ct = encrypt(
        key, filename.encode(), _context(owner, attachment_id, FILENAME_COLUMN, key.version)
    )
    return EncryptedAttachment(name_ct, blobs.put(file_ct), key.version)


def decrypt_filename(keys: KeyService, owner: AttachmentOwner, attachment: Attachment) -> str:
    """The attachment's original filename. Raises ``KeyNotFoundError``/``DecryptionError``."""
    key = keys.data_key(owner.subject_id, owner.kind, create=False)
    context = _context(owner, attachment.id, FILENAME_COLUMN, attachment.key_version)
    return decrypt(key, attachment.filename_ct, context).decode()


def read_attachment_file(
    keys: KeyService, blobs: BlobStore, owner: AttachmentOwner, attachment: Attachment
) -> bytes:
    """The decrypted file. Raises ``BlobNotFoundError``, ``KeyNotFoundError`` or
    ``DecryptionError``; never returns ciphertext."""
    key = keys.data_key(owner.subject_id, owner.kind, create=False)
    context = _context(owner, attachment.id, FILE_COLUMN, attachment.key_version)
    return decrypt(key, blobs.get(attachment.blob_id), context)
