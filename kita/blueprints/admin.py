"""Administration for Kita leaders and provider admins: Kitas, groups, staff and roles, children
and guardians, invitations.

Every view loads its objects through ``kita.access`` (404 unless the actor manages the Kita) and
checks that nested objects belong to the Kita in the URL. Destructive forms carry a confirmation
checkbox the server requires, so nothing is deleted by a stray request even without JavaScript.
Invitation links exist only in the response that issues them: the database keeps their hash.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from kita import access
from kita.access import Action
from kita.config import SUPPORTED_LOCALES
from kita.errors import NotFoundError, ValidationError
from kita.forms import FormReader, parse_uuid
from kita.models.accounts import Invitation, Membership, Role
from kita.models.organisation import Child, Group, GuardianLink, Kita, Relation
from kita.services import invitations, organisation, push_delivery
from kita.services.invitations import InvitationRequest, IssuedInvitation
from kita.web import (
    get_db,
    manager_required,
    provider_admin_required,
    require_actor,
    state,
)

bp = Blueprint("admin", __name__, url_prefix="/admin")

KITA_URL = "/kitas/<uuid:kita_id>"
INVITABLE_STAFF_ROLES = tuple(role.value for role in organisation.STAFF_PAGE_ROLES)
RELATIONS = tuple(relation.value for relation in Relation)
# Value of the children filter that selects children without a group.
NO_GROUP = "none"


# --- helpers ---------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _kita(kita_id: uuid.UUID) -> Kita:
    return access.get_kita(get_db(), require_actor(), kita_id, Action.MANAGE)


def _group(kita: Kita, group_id: uuid.UUID) -> Group:
    group = access.get_group(get_db(), require_actor(), group_id, Action.MANAGE)
    if group.kita_id != kita.id:
        raise NotFoundError()
    return group


def _child(kita: Kita, child_id: uuid.UUID) -> Child:
    child = access.get_child(get_db(), require_actor(), child_id, Action.MANAGE)
    if child.kita_id != kita.id:
        raise NotFoundError()
    return child


def _staff_membership(kita: Kita, membership_id: uuid.UUID) -> Membership:
    membership = access.get_membership(get_db(), require_actor(), membership_id)
    if membership.kita_id != kita.id or membership.role not in organisation.STAFF_PAGE_ROLES:
        raise NotFoundError()
    return membership


def _guardian_link(child: Child, link_id: uuid.UUID) -> GuardianLink:
    link = access.get_guardian_link(get_db(), require_actor(), link_id)
    if link.child_id != child.id:
        raise NotFoundError()
    return link


def _invitation(kita: Kita, invitation_id: uuid.UUID) -> Invitation:
    invitation = access.get_invitation(get_db(), require_actor(), invitation_id)
    if invitation.kita_id != kita.id:
        raise NotFoundError()
    return invitation


def _page_number() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isdigit() and len(raw) < 7 else 1


def _confirmed() -> bool:
    return request.form.get("confirm") == "yes"


def _not_confirmed() -> ValidationError:
    return ValidationError(
        {"confirm": _("Please tick the box to confirm.")},
        _("Nothing was changed: please tick the box to confirm."),
    )


def _form_error(template: str, error: ValidationError, **context: Any) -> tuple[str, int]:
    """Render the form again with the submitted values and every field error (422)."""
    context.setdefault("form", request.form)
    return render_template(
        template, errors=error.fields, message=error.message, **context
    ), error.status


def _done(message: str, endpoint: str, **values: Any) -> Response:
    flash(message, "success")
    return redirect(url_for(endpoint, **values))


def _join_link(issued: IssuedInvitation) -> str:
    return f"{state().config.base_url}{url_for('auth.join', token=issued.token)}"


def _render_issued(kita: Kita, issued: IssuedInvitation, child: Child | None = None) -> str:
    """The link and QR code, shown once: only the token's hash is stored."""
    link = _join_link(issued)
    return render_template(
        "admin/invitation_issued.html",
        kita=kita,
        invitation=issued.invitation,
        child=child,
        link=link,
        qr=invitations.qr_svg(link),
    )


# --- Kitas -----------------------------------------------------------------------------------


#: What the operator alerts of the push and e-mail workers mean (they hold a host and a status).
ALERT_LABELS: dict[str, object] = {
    "push_rejected": _l(
        "A push service refused our notifications: check the VAPID key and contact address."
    ),
    "smtp_refused": _l("The mail server refused urgent e-mails: check the SMTP settings."),
}


@bp.route("/")
@manager_required
def index() -> Any:
    """The Kitas this person manages."""
    actor = require_actor()
    kitas = get_db().scalars(access.managed_kitas(actor)).all()
    alerts = [
        (
            format_datetime(alert.created_at, "short"),
            ALERT_LABELS.get(alert.kind, alert.kind),
            alert.detail,
        )
        for alert in (
            push_delivery.recent_alerts(get_db(), now=datetime.now(UTC))
            if actor.is_provider_admin
            else []
        )
    ]
    return render_template("admin/index.html", kitas=kitas, alerts=alerts)


def _kita_input(form: FormReader) -> organisation.KitaInput:
    return organisation.KitaInput(
        name=form.text("name", max_length=organisation.KITA_NAME_MAX, required=True),
        address=form.text("address", max_length=organisation.ADDRESS_MAX),
        default_locale=form.choice("default_locale", SUPPORTED_LOCALES) or "",
    )


@bp.route("/kitas/new", methods=["GET", "POST"])
@provider_admin_required
def kita_new() -> Any:
    """Provider admins create a Kita of their provider."""
    if request.method == "GET":
        form = {"default_locale": state().config.default_locale}
        return render_template("admin/kita_form.html", kita=None, errors={}, form=form)
    reader = FormReader(request.form)
    try:
        data = _kita_input(reader)
        reader.check()
        kita = organisation.create_kita(get_db(), actor=require_actor(), data=data)
    except ValidationError as error:
        return _form_error("admin/kita_form.html", error, kita=None)
    return _done(_("The Kita was created."), "admin.kita", kita_id=kita.id)


@bp.route(f"{KITA_URL}/settings", methods=["GET", "POST"])
@provider_admin_required
def kita_settings(kita_id: uuid.UUID) -> Any:
    """Name, address and default language of a Kita (the provider's admins only)."""
    kita = access.get_kita_settings(get_db(), require_actor(), kita_id)
    if request.method == "GET":
        form = {"name": kita.name, "address": kita.address, "default_locale": kita.default_locale}
        return render_template("admin/kita_form.html", kita=kita, errors={}, form=form)
    reader = FormReader(request.form)
    try:
        data = _kita_input(reader)
        reader.check()
        organisation.update_kita_settings(get_db(), actor=require_actor(), kita=kita, data=data)
    except ValidationError as error:
        return _form_error("admin/kita_form.html", error, kita=kita)
    return _done(_("The settings were saved."), "admin.kita", kita_id=kita.id)


@bp.route(KITA_URL)
@manager_required
def kita(kita_id: uuid.UUID) -> Any:
    """A Kita at a glance, with links to its groups, staff, children and invitations."""
    kita = _kita(kita_id)
    summary = organisation.summarise_kita(get_db(), kita, now=_now())
    may_edit = access.may_edit_kita_settings(require_actor(), kita)
    return render_template("admin/kita.html", kita=kita, summary=summary, may_edit=may_edit)


# --- groups ----------------------------------------------------------------------------------


def _render_groups(kita: Kita, status: int = 200, **context: Any) -> tuple[str, int]:
    context.setdefault("errors", {})
    context.setdefault("form", {})
    groups = organisation.list_groups(get_db(), kita)
    return render_template("admin/groups.html", kita=kita, groups=groups, **context), status


@bp.route(f"{KITA_URL}/groups", methods=["GET", "POST"])
@manager_required
def groups(kita_id: uuid.UUID) -> Any:
    """The Kita's groups; POST adds one."""
    kita = _kita(kita_id)
    if request.method == "GET":
        return _render_groups(kita)
    reader = FormReader(request.form)
    name = reader.text("name", max_length=organisation.NAME_MAX, required=True)
    try:
        reader.check()
        organisation.create_group(get_db(), actor=require_actor(), kita=kita, name=name)
    except ValidationError as error:
        return _render_groups(
            kita, error.status, errors=error.fields, message=error.message, form=request.form
        )
    return _done(_("The group was created."), "admin.groups", kita_id=kita.id)


def _render_group(kita: Kita, group: Group, status: int = 200, **context: Any) -> tuple[str, int]:
    context.setdefault("errors", {})
    context.setdefault("form", {"name": group.name})
    summary = next(
        (g for g in organisation.list_groups(get_db(), kita) if g.group.id == group.id), None
    )
    children = summary.children if summary else 0
    return render_template(
        "admin/group.html", kita=kita, group=group, children=children, **context
    ), status


@bp.route(f"{KITA_URL}/groups/<uuid:group_id>", methods=["GET", "POST"])
@manager_required
def group(kita_id: uuid.UUID, group_id: uuid.UUID) -> Any:
    """One group: rename it (POST), or go on to delete it."""
    kita = _kita(kita_id)
    group = _group(kita, group_id)
    if request.method == "GET":
        return _render_group(kita, group)
    reader = FormReader(request.form)
    name = reader.text("name", max_length=organisation.NAME_MAX, required=True)
    try:
        reader.check()
        organisation.rename_group(get_db(), actor=require_actor(), group=group, name=name)
    except ValidationError as error:
        return _render_group(
            kita, group, error.status, errors=error.fields, message=error.message, form=request.form
        )
    return _done(_("The group was renamed."), "admin.groups", kita_id=kita.id)


@bp.route(f"{KITA_URL}/groups/<uuid:group_id>/delete", methods=["POST"])
@manager_required
def group_delete(kita_id: uuid.UUID, group_id: uuid.UUID) -> Any:
    """Delete an empty group after confirmation; refused while children are in it."""
    kita = _kita(kita_id)
    group = _group(kita, group_id)
    try:
        if not _confirmed():
            raise _not_confirmed()
        organisation.delete_group(get_db(), actor=require_actor(), group=group, now=_now())
    except ValidationError as error:
        return _render_group(kita, group, error.status, errors=error.fields, message=error.message)
    return _done(_("The group was deleted."), "admin.groups", kita_id=kita.id)


# --- staff -----------------------------------------------------------------------------------


def _render_staff(kita: Kita, status: int = 200, **context: Any) -> tuple[str, int]:
    staff = organisation.list_staff(get_db(), actor=require_actor(), kita=kita)
    return render_template("admin/staff.html", kita=kita, staff=staff, **context), status


@bp.route(f"{KITA_URL}/staff")
@manager_required
def staff(kita_id: uuid.UUID) -> Any:
    """Staff and council members of the Kita with their roles and groups."""
    return _render_staff(_kita(kita_id))


@bp.route(f"{KITA_URL}/staff/<uuid:membership_id>/groups", methods=["GET", "POST"])
@manager_required
def staff_groups(kita_id: uuid.UUID, membership_id: uuid.UUID) -> Any:
    """Choose the groups an educator works in."""
    kita = _kita(kita_id)
    membership = _staff_membership(kita, membership_id)
    if membership.role is not Role.EDUCATOR:
        raise NotFoundError()
    context = {
        "kita": kita,
        "membership": membership,
        "groups": organisation.list_groups(get_db(), kita),
    }
    if request.method == "GET":
        chosen = organisation.assigned_group_ids(get_db(), membership)
        return render_template("admin/staff_groups.html", errors={}, chosen=chosen, **context)
    chosen_ids = [parse_uuid(raw) for raw in request.form.getlist("groups")]
    chosen = {group_id for group_id in chosen_ids if group_id is not None}
    try:
        if len(chosen) != len(chosen_ids):
            raise ValidationError({"groups": _("Please choose groups of this Kita.")})
        organisation.set_educator_groups(
            get_db(), actor=require_actor(), membership=membership, group_ids=chosen
        )
    except ValidationError as error:
        return render_template(
            "admin/staff_groups.html", errors=error.fields, chosen=chosen, **context
        ), error.status
    return _done(_("The groups were saved."), "admin.staff", kita_id=kita.id)


@bp.route(f"{KITA_URL}/staff/<uuid:membership_id>/remove", methods=["POST"])
@manager_required
def membership_remove(kita_id: uuid.UUID, membership_id: uuid.UUID) -> Any:
    """End a staff or council role after confirmation."""
    kita = _kita(kita_id)
    membership = _staff_membership(kita, membership_id)
    try:
        if not _confirmed():
            raise _not_confirmed()
        organisation.remove_membership(get_db(), actor=require_actor(), membership=membership)
    except ValidationError as error:
        return _render_staff(kita, error.status, message=error.message)
    return _done(_("The role was removed."), "admin.staff", kita_id=kita.id)


@bp.route(f"{KITA_URL}/accounts/<uuid:user_id>/active", methods=["POST"])
@manager_required
def account_active(kita_id: uuid.UUID, user_id: uuid.UUID) -> Any:
    """Disable an account (all its sessions end at once; needs confirmation) or re-enable it."""
    kita = _kita(kita_id)
    user = access.get_kita_member(get_db(), require_actor(), kita, user_id)
    active = request.form.get("active") == "1"
    try:
        if not active and not _confirmed():
            raise _not_confirmed()
        organisation.set_member_active(
            get_db(), actor=require_actor(), kita=kita, user=user, active=active
        )
    except ValidationError as error:
        return _render_staff(kita, error.status, message=error.message)
    message = _("The account was enabled.") if active else _("The account was disabled.")
    return _done(message, "admin.staff", kita_id=kita.id)


@bp.route(f"{KITA_URL}/staff/invite", methods=["GET", "POST"])
@manager_required
def staff_invite(kita_id: uuid.UUID) -> Any:
    """Invite a leader, educator, caretaker or council member; the link is shown once."""
    kita = _kita(kita_id)
    groups = organisation.list_groups(get_db(), kita)
    if request.method == "GET":
        form = {"role": Role.EDUCATOR.value, "locale": kita.default_locale}
        return render_template(
            "admin/staff_invite.html", kita=kita, groups=groups, errors={}, form=form
        )
    reader = FormReader(request.form)
    role = Role(reader.choice("role", INVITABLE_STAFF_ROLES) or Role.EDUCATOR)
    group_id = reader.uuid("group_id")
    email = reader.text("email", max_length=254) or None
    locale = reader.choice("locale", SUPPORTED_LOCALES, required=False)
    try:
        reader.check()
        issued = invitations.create_invitation(
            get_db(),
            actor=require_actor(),
            kita=kita,
            request=InvitationRequest(
                # Only teaching roles are assigned to a group.
                role=role,
                group_id=group_id if role in organisation.TEACHING_ROLES else None,
                email=email,
                locale=locale,
            ),
            now=_now(),
            days=state().config.invitation_days,
        )
    except ValidationError as error:
        return _form_error("admin/staff_invite.html", error, kita=kita, groups=groups)
    return _render_issued(kita, issued)


# --- children --------------------------------------------------------------------------------


@bp.route(f"{KITA_URL}/children")
@manager_required
def children(kita_id: uuid.UUID) -> Any:
    """The Kita's children, 50 per page, searchable by name and filtered by group."""
    kita = _kita(kita_id)
    groups = organisation.list_groups(get_db(), kita)
    reader = FormReader(request.args)
    search = reader.text("q", max_length=organisation.SEARCH_MAX)
    group_choice = reader.choice(
        "group", [NO_GROUP, *(str(g.group.id) for g in groups)], required=False
    )
    args = {"q": search, "group": group_choice or ""}
    try:
        reader.check()
    except ValidationError as error:
        empty = organisation.Page[organisation.ChildRow]([], 1, 0)
        return render_template(
            "admin/children.html",
            kita=kita,
            groups=groups,
            page=empty,
            args=args,
            errors=error.fields,
            message=error.message,
        ), error.status
    page = organisation.list_children(
        get_db(),
        kita=kita,
        search=search,
        group_id=parse_uuid(group_choice) if group_choice != NO_GROUP else None,
        without_group=group_choice == NO_GROUP,
        page=_page_number(),
    )
    return render_template(
        "admin/children.html", kita=kita, groups=groups, page=page, args=args, errors={}
    )


def _child_input(reader: FormReader) -> organisation.ChildInput:
    return organisation.ChildInput(
        first_name=reader.text("first_name", max_length=organisation.NAME_MAX, required=True),
        last_name=reader.text("last_name", max_length=organisation.NAME_MAX, required=True),
        birth_date=reader.date("birth_date"),
        group_id=reader.uuid("group_id"),
        entry_date=reader.date("entry_date"),
        leave_date=reader.date("leave_date"),
    )


@bp.route(f"{KITA_URL}/children/new", methods=["GET", "POST"])
@manager_required
def child_new(kita_id: uuid.UUID) -> Any:
    """Add a child to the Kita."""
    kita = _kita(kita_id)
    groups = organisation.list_groups(get_db(), kita)
    context = {"kita": kita, "child": None, "groups": groups}
    if request.method == "GET":
        return render_template("admin/child_form.html", errors={}, form={}, **context)
    reader = FormReader(request.form)
    try:
        data = _child_input(reader)
        reader.check()
        child = organisation.create_child(
            get_db(), actor=require_actor(), kita=kita, data=data, today=_now().date()
        )
    except ValidationError as error:
        return _form_error("admin/child_form.html", error, **context)
    return _done(_("The child was added."), "admin.child", kita_id=kita.id, child_id=child.id)


@bp.route(f"{KITA_URL}/children/<uuid:child_id>/edit", methods=["GET", "POST"])
@manager_required
def child_edit(kita_id: uuid.UUID, child_id: uuid.UUID) -> Any:
    """Change a child's names, dates and group."""
    kita = _kita(kita_id)
    child = _child(kita, child_id)
    groups = organisation.list_groups(get_db(), kita)
    context = {"kita": kita, "child": child, "groups": groups}
    if request.method == "GET":
        form = {
            "first_name": child.first_name,
            "last_name": child.last_name,
            "birth_date": child.birth_date.isoformat() if child.birth_date else "",
            "group_id": str(child.group_id or ""),
            "entry_date": child.entry_date.isoformat() if child.entry_date else "",
            "leave_date": child.leave_date.isoformat() if child.leave_date else "",
        }
        return render_template("admin/child_form.html", errors={}, form=form, **context)
    reader = FormReader(request.form)
    try:
        data = _child_input(reader)
        reader.check()
        organisation.update_child(
            get_db(), actor=require_actor(), child=child, data=data, today=_now().date()
        )
    except ValidationError as error:
        return _form_error("admin/child_form.html", error, **context)
    return _done(_("The changes were saved."), "admin.child", kita_id=kita.id, child_id=child.id)


def _relation(reader: FormReader) -> Relation | None:
    raw = reader.choice("relation", RELATIONS)
    return Relation(raw) if raw else None


def _render_child(kita: Kita, child: Child, status: int = 200, **context: Any) -> tuple[str, int]:
    db = get_db()
    context.setdefault("errors", {})
    guardians = organisation.list_guardians(db, child)
    open_invitations = organisation.list_invitations(
        db, kita=kita, now=_now(), status="open", child_id=child.id
    )
    return render_template(
        "admin/child.html",
        kita=kita,
        child=child,
        guardians=guardians,
        open_invitations=open_invitations.items,
        **context,
    ), status


@bp.route(f"{KITA_URL}/children/<uuid:child_id>")
@manager_required
def child(kita_id: uuid.UUID, child_id: uuid.UUID) -> Any:
    """A child's record with guardians and open invitations."""
    kita = _kita(kita_id)
    return _render_child(kita, _child(kita, child_id))


@bp.route(f"{KITA_URL}/children/<uuid:child_id>/guardians/<uuid:link_id>", methods=["POST"])
@manager_required
def guardian_update(kita_id: uuid.UUID, child_id: uuid.UUID, link_id: uuid.UUID) -> Any:
    """Change relation, custody and pick-up permission of one guardian."""
    kita = _kita(kita_id)
    child = _child(kita, child_id)
    link = _guardian_link(child, link_id)
    reader = FormReader(request.form)
    relation = _relation(reader)
    try:
        reader.check()
        organisation.update_guardian_link(
            get_db(),
            actor=require_actor(),
            link=link,
            relation=relation,
            has_custody=reader.checkbox("has_custody"),
            may_pick_up=reader.checkbox("may_pick_up"),
        )
    except ValidationError as error:
        return _render_child(kita, child, error.status, errors=error.fields, message=error.message)
    return _done(_("The changes were saved."), "admin.child", kita_id=kita.id, child_id=child.id)


@bp.route(f"{KITA_URL}/children/<uuid:child_id>/guardians/<uuid:link_id>/remove", methods=["POST"])
@manager_required
def guardian_remove(kita_id: uuid.UUID, child_id: uuid.UUID, link_id: uuid.UUID) -> Any:
    """Unlink a guardian from the child after confirmation."""
    kita = _kita(kita_id)
    child = _child(kita, child_id)
    link = _guardian_link(child, link_id)
    if not _confirmed():
        error = _not_confirmed()
        return _render_child(kita, child, error.status, message=error.message)
    organisation.remove_guardian_link(get_db(), actor=require_actor(), link=link)
    return _done(_("The guardian was removed."), "admin.child", kita_id=kita.id, child_id=child.id)


@bp.route(f"{KITA_URL}/children/<uuid:child_id>/invite", methods=["GET", "POST"])
@manager_required
def guardian_invite(kita_id: uuid.UUID, child_id: uuid.UUID) -> Any:
    """Invite a guardian of the child; the link and QR code are shown once."""
    kita = _kita(kita_id)
    child = _child(kita, child_id)
    context = {"kita": kita, "child": child}
    if request.method == "GET":
        form = {"locale": kita.default_locale, "has_custody": "on", "may_pick_up": "on"}
        return render_template("admin/guardian_invite.html", errors={}, form=form, **context)
    reader = FormReader(request.form)
    relation = _relation(reader)
    email = reader.text("email", max_length=254) or None
    locale = reader.choice("locale", SUPPORTED_LOCALES, required=False)
    try:
        reader.check()
        issued = invitations.create_invitation(
            get_db(),
            actor=require_actor(),
            kita=kita,
            request=InvitationRequest(
                role=Role.PARENT,
                child_id=child.id,
                relation=relation,
                has_custody=reader.checkbox("has_custody"),
                may_pick_up=reader.checkbox("may_pick_up"),
                email=email,
                locale=locale,
            ),
            now=_now(),
            days=state().config.invitation_days,
        )
    except ValidationError as error:
        return _form_error("admin/guardian_invite.html", error, **context)
    return _render_issued(kita, issued, child)


# --- invitations -----------------------------------------------------------------------------


def _render_invitations(kita: Kita, status: int = 200, **context: Any) -> tuple[str, int]:
    reader = FormReader(request.args)
    chosen = reader.choice("status", organisation.INVITATION_STATUSES, required=False)
    context.setdefault("errors", reader.errors)
    context.setdefault("form", {})
    if reader.errors:
        status = 422
    page = organisation.list_invitations(
        get_db(), kita=kita, now=_now(), status=chosen, page=_page_number()
    )
    return render_template(
        "admin/invitations.html",
        kita=kita,
        page=page,
        status_filter=chosen or "",
        groups=organisation.list_groups(get_db(), kita),
        **context,
    ), status


@bp.route(f"{KITA_URL}/invitations")
@manager_required
def invitations_list(kita_id: uuid.UUID) -> Any:
    """The Kita's invitations with their status, 50 per page, filtered by status."""
    return _render_invitations(_kita(kita_id))


@bp.route(f"{KITA_URL}/invitations/<uuid:invitation_id>/revoke", methods=["POST"])
@manager_required
def invitation_revoke(kita_id: uuid.UUID, invitation_id: uuid.UUID) -> Any:
    """Revoke an open invitation after confirmation; its link stops working at once."""
    kita = _kita(kita_id)
    invitation = _invitation(kita, invitation_id)
    try:
        if not _confirmed():
            raise _not_confirmed()
        invitations.revoke_invitation(
            get_db(), actor=require_actor(), invitation=invitation, now=_now()
        )
    except ValidationError as error:
        return _render_invitations(kita, error.status, message=error.message)
    return _done(_("The invitation was revoked."), "admin.invitations_list", kita_id=kita.id)


def _sheet_group(kita: Kita, reader: FormReader) -> Group | None:
    """The group chosen for a QR sheet, which must belong to the Kita (a field error if not)."""
    group_id = reader.uuid("group_id", required=True)
    group = get_db().get(Group, group_id) if group_id is not None else None
    if group_id is not None and (group is None or group.kita_id != kita.id):
        reader.errors["group_id"] = _("Please choose a group of this Kita.")
        return None
    return group


@bp.route(f"{KITA_URL}/invitations/group-sheet", methods=["POST"])
@manager_required
def group_sheet(kita_id: uuid.UUID) -> Any:
    """Issue fresh invitations for every child of a group without a guardian and render a
    printable sheet with one QR card per child."""
    kita = _kita(kita_id)
    reader = FormReader(request.form)
    group = _sheet_group(kita, reader)
    if group is None:
        error = ValidationError(reader.errors)
        return _render_invitations(kita, error.status, errors=error.fields, form=request.form)
    cards = invitations.issue_group_sheet(
        get_db(),
        actor=require_actor(),
        group=group,
        now=_now(),
        days=state().config.invitation_days,
    )
    links = [_join_link(card.issued) for card in cards]
    sheet = [
        {"card": card, "link": link, "qr": invitations.qr_svg(link)}
        for card, link in zip(cards, links, strict=True)
    ]
    return render_template("admin/group_sheet.html", kita=kita, group=group, sheet=sheet)
