"""The ``kita`` command: init, db, demo, serve, audit, sessions, create-admin, keys, retention."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy import select

from kita.config import ConfigError, KitaConfig, write_secret_key
from kita.crypto import KeyService, ensure_master_key


def _config() -> KitaConfig:
    try:
        return KitaConfig.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def main() -> None:
    """kita: communication backend and app for the Kitas of a city."""


@main.command()
def init() -> None:
    """Create the instance folder and secret key, and migrate the database (safe to repeat)."""
    from kita import migrations

    instance = Path(os.environ.get("KITA_INSTANCE_PATH") or Path.cwd() / "instance").resolve()
    if write_secret_key(instance):
        click.echo(f"Created {instance / 'secret_key'}")
    config = _config()
    migrations.upgrade(config.database_url)
    click.echo("Database is at the newest schema.")
    created = ensure_master_key(config.keys_dir, config.master_key)
    if created is not None:
        click.echo(f"Created master key version {created.version} in {config.keys_dir}")
    from kita.push.vapid import ensure_vapid_key, vapid_key_path

    vapid_path = vapid_key_path(config.instance_path)
    if ensure_vapid_key(vapid_path)[1]:
        click.echo(f"Created the VAPID key for Web Push in {vapid_path}")
    if config.database_url.startswith("sqlite:///"):
        # The database holds personal data: readable by the service account only (SQLite gives
        # its -wal and -shm files the same mode).
        Path(config.database_url.removeprefix("sqlite:///")).chmod(0o600)


@main.group()
def db() -> None:
    """Database schema migrations."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database up to REVISION (default: head)."""
    from kita import migrations

    migrations.upgrade(_config().database_url, revision)


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION."""
    from kita import migrations

    migrations.downgrade(_config().database_url, revision)


@main.command()
def demo() -> None:
    """Load the demo city (once) with documentation for every child, and print one login per
    role."""
    from kita.blobs import BlobStore
    from kita.db import Database
    from kita.services.accounts import make_password_hasher
    from kita.services.demo import (
        demo_logins,
        load_demo,
        load_demo_announcements,
        load_demo_conversations,
    )
    from kita.services.translation import translator_for

    config = _config()
    database = Database(config.database_url)
    try:
        with _key_service(config) as keys, database.transaction() as session:
            created = load_demo(
                session,
                make_password_hasher(config.password_hashing),
                keys=keys,
                blobs=BlobStore(config.blob_dir),
            )
            # Separately, so a demo city loaded before messaging existed gets its messages too.
            announced = load_demo_announcements(
                session,
                keys=keys,
                blobs=BlobStore(config.blob_dir),
                translator=translator_for(session, config),
                now=datetime.now(UTC),
            )
            # Conversation texts are personal: translated without the shared memory.
            conversed = load_demo_conversations(
                session,
                keys=keys,
                blobs=BlobStore(config.blob_dir),
                translator=translator_for(session, config, use_memory=False),
                now=datetime.now(UTC),
            )
    finally:
        database.dispose()
    click.echo("Demo city loaded." if created else "Demo city was already there.")
    if conversed:
        click.echo(f"{conversed} conversations added.")
    if announced:
        click.echo(f"{announced} announcements added.")
    click.echo("Logins (password for all: shown below):")
    for login in demo_logins():
        note = f"  ({login.note})" if login.note else ""
        click.echo(f"  {login.role:<18} {login.email:<34} {login.password}{note}")


@main.command()
@click.option("--bind", default="127.0.0.1:5000", show_default=True)
@click.option("--workers", default=2, show_default=True, type=int)
def serve(bind: str, workers: int) -> None:
    """Serve the app with gunicorn."""
    _config()  # fail early with a readable message
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--bind",
        bind,
        "--access-logfile",
        "-",
        "--logger-class",
        "kita.access_log.MaskingLogger",
        "--access-logformat",
        "%(m)s %(U)s %(s)s %(L)ss",
        "kita:create_app()",
    ]
    os.execv(sys.executable, args)  # noqa: S606 (replaces this process by gunicorn)


@main.group()
def audit() -> None:
    """The security audit log."""


@audit.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; exits 1 when a row was changed or deleted."""
    from kita import audit as audit_log
    from kita.db import Database

    database = Database(_config().database_url)
    try:
        with database.session() as session:
            report = audit_log.verify_chain(session)
    finally:
        database.dispose()
    if report.ok:
        click.echo(f"Audit log intact: {report.checked} events verified.")
        return
    click.echo(
        f"AUDIT LOG TAMPERED: {report.problem} (event {report.event_id}); "
        f"{report.checked} events verified before it.",
        err=True,
    )
    sys.exit(1)


@main.group()
def sessions() -> None:
    """Server-side sessions."""


@sessions.command("purge")
def sessions_purge() -> None:
    """Delete expired sessions."""
    from kita.db import Database
    from kita.sessions import purge_expired_sessions

    config = _config()
    database = Database(config.database_url)
    try:
        count = purge_expired_sessions(
            database,
            idle=timedelta(minutes=config.session_idle_minutes),
            absolute=timedelta(hours=config.session_absolute_hours),
        )
    finally:
        database.dispose()
    click.echo(f"Deleted {count} expired sessions.")


@main.command("create-admin")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--provider", "provider_name", required=True, help="The provider (Träger) name.")
@click.password_option()
def create_admin(email: str, name: str, provider_name: str, password: str) -> None:
    """Create a provider (if new) and an admin account for it."""
    import uuid

    from kita import audit as audit_log
    from kita.db import Database
    from kita.errors import ValidationError
    from kita.models.accounts import User
    from kita.models.organisation import Provider
    from kita.services.accounts import make_password_hasher, validate_email, validate_password

    config = _config()
    try:
        address = validate_email(email)
        validate_password(password, email=address)
    except ValidationError as exc:
        raise click.ClickException("; ".join(str(v) for v in exc.fields.values())) from exc
    database = Database(config.database_url)
    with database.transaction() as session:
        if session.scalars(select(User.id).where(User.email == address)).first():
            raise click.ClickException("An account with this e-mail address exists already.")
        provider = session.scalars(select(Provider).where(Provider.name == provider_name)).first()
        if provider is None:
            provider = Provider(id=uuid.uuid4(), name=provider_name)
            session.add(provider)
        user = User(
            id=uuid.uuid4(),
            email=address,
            display_name=name,
            password_hash=make_password_hasher(config.password_hashing).hash(password),
            admin_of_provider_id=provider.id,
        )
        session.add(user)
        session.flush()
        audit_log.record(session, action="admin.created", object_type="user", object_id=user.id)
    database.dispose()
    click.echo(f"Created provider admin {address}; TOTP enrolment follows at the first login.")


@main.group()
def translations() -> None:
    """Message catalogs for the ten shipped languages."""


@translations.command("update")
def translations_update() -> None:
    """Extract strings into translations/messages.pot and merge them into every catalog."""
    from kita import catalogs

    catalogs.update()


@translations.command("compile")
def translations_compile() -> None:
    """Compile the catalogs (.po) to the binary form the app reads (.mo)."""
    from kita import catalogs

    catalogs.compile_all()


@translations.command("check")
def translations_check() -> None:
    """Fail when the template is stale or a shipped catalog misses a translation."""
    from kita import catalogs

    report = catalogs.check()
    for problem in report.problems[:200]:
        click.echo(problem, err=True)
    if not report.ok:
        click.echo(f"{len(report.problems)} catalog problems.", err=True)
        sys.exit(1)
    click.echo("Catalogs are complete.")


@contextmanager
def _key_service(config: KitaConfig) -> Iterator[KeyService]:
    """The key service over the instance's keys and keystore, closed afterwards."""
    from kita.crypto import Keyring, SqliteKeystore

    keyring = Keyring(config.keys_dir, config.master_key)
    if not keyring.versions:
        raise click.ClickException("No master key: run `kita init` first.")
    keystore = SqliteKeystore(config.keystore_path)
    try:
        yield KeyService(keyring, keystore)
    finally:
        keystore.close()


@main.group()
def keys() -> None:
    """Master keys (KEKs) and the data keys they wrap."""


@keys.command("status")
def keys_status() -> None:
    """Show master key versions, the primary one, and data keys per master key version."""
    with _key_service(_config()) as service:
        status = service.status()
    sources = status.sources
    for version in status.kek_versions:
        marker = " (primary)" if version == status.primary else ""
        count = status.data_keys.get(version, 0)
        click.echo(
            f"master key v{version}{marker} [{sources.get(version, '?')}]: {count} data keys"
        )
    missing = {v: n for v, n in status.data_keys.items() if v not in status.kek_versions}
    for version, count in missing.items():
        click.echo(f"WARNING: {count} data keys wrapped by missing master key v{version}", err=True)


@keys.command("rotate")
@click.option(
    "--new/--resume",
    "new",
    default=False,
    help="--new always makes a new version (a compromised key); "
    "the default finishes an interrupted rotation first.",
)
def keys_rotate(new: bool) -> None:
    """Make a new primary master key and rewrap every data key with it (resumable)."""
    with (
        _key_service(_config()) as service,
        click.progressbar(length=1, label="Rewrapping data keys") as bar,
    ):

        def progress(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        result = service.rotate(progress, resume=not new)
    state = "new" if result.created else "existing"
    click.echo(
        f"Primary master key: v{result.kek_version} ({state}); "
        f"{result.rewrapped} data keys rewrapped."
    )


@keys.command("retire")
@click.argument("version", type=int)
def keys_retire(version: int) -> None:
    """Destroy master key VERSION once no data key needs it (keystore backups made before the
    rewrap can then no longer be read)."""
    from kita.crypto import RetireRefusedError

    with _key_service(_config()) as service:
        try:
            service.retire(version)
        except RetireRefusedError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"Master key v{version} destroyed.")


@main.group()
def retention() -> None:
    """Deleting the documentation of children who have left (KiBiz: hand over, then delete)."""


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="Only count what is due; delete nothing.")
def retention_run(dry_run: bool) -> None:
    """Shred the data of children who left: after the recorded hand-over, or at the latest
    KITA_RETENTION_DAYS_AFTER_LEAVE days after the leaving date (the worker runs this daily)."""
    from datetime import UTC, datetime

    from kita.blobs import BlobStore
    from kita.db import Database
    from kita.services.lifecycle import run_retention

    config = _config()
    database = Database(config.database_url)
    try:
        with _key_service(config) as keys:
            report = run_retention(
                database,
                keys=keys,
                blobs=BlobStore(config.blob_dir),
                now=datetime.now(UTC),
                days_after_leave=config.retention_days_after_leave,
                dry_run=dry_run,
            )
    finally:
        database.dispose()
    click.echo(
        f"Due on {report.today.isoformat()}: {report.due} children "
        f"({report.handed_over} handed over, {report.deadline} past the "
        f"{config.retention_days_after_leave}-day deadline) with {report.entries} "
        f"documentation entries and {report.photos} photos."
    )
    if dry_run:
        click.echo("Dry run: nothing was deleted.")
        return
    click.echo(
        f"Shredded {len(report.shredded)} children: {report.keys_deleted} data keys, "
        f"{report.rows_deleted} database rows and {report.blobs_deleted} photo files deleted."
    )
    if not report.purged:
        click.echo("WARNING: the database WAL was in use and not truncated; run again.", err=True)
    if report.failed:
        click.echo(
            f"ERROR: {len(report.failed)} children could not be shredded (see the log); "
            "run again to finish.",
            err=True,
        )
        sys.exit(1)


@main.command()
@click.option("--once", is_flag=True, help="Run the due jobs once and exit.")
def worker(once: bool) -> None:
    """Run the background worker (periodic jobs; push delivery with messaging)."""
    import logging

    from kita.db import Database
    from kita.worker import WorkerContext, run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = _config()
    database = Database(config.database_url)
    with _key_service(config) as keys:
        try:
            done = run_worker(WorkerContext(config, database, keys), once=once)
        finally:
            database.dispose()
    if once:
        for name, count in done.items():
            click.echo(f"{name}: {count}")
