"""SQLAlchemy models, one module per domain. Importing this package registers every table."""

from kita.models.accounts import (
    GroupAssignment,
    Invitation,
    LoginFailure,
    Membership,
    PasswordReset,
    RecoveryCode,
    Role,
    ServerSession,
    User,
)
from kita.models.audit import AuditEvent, AuditHead
from kita.models.imports import CsvImport
from kita.models.organisation import Child, Council, Group, GuardianLink, Kita, Provider, Relation

__all__ = [
    "AuditEvent",
    "AuditHead",
    "Child",
    "Council",
    "CsvImport",
    "Group",
    "GroupAssignment",
    "GuardianLink",
    "Invitation",
    "Kita",
    "LoginFailure",
    "Membership",
    "PasswordReset",
    "Provider",
    "RecoveryCode",
    "Relation",
    "Role",
    "ServerSession",
    "User",
]
