"""``pushpool server start``: the embedded control plane; ``pushpool dashboard``: a link that signs you in to it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import quote

import typer

from pushpool import profiles
from pushpool.cli.common import Output, OutputOption, emit, get_client

app = typer.Typer(help="Run the control plane (API and tick loop in one process; SQLite, or PostgreSQL shared by "
                       "replicas).",
                  no_args_is_help=True)


StoreOption = typer.Option(None, "--store",
                           help="sqlite (default: $PUSHPOOL_HOME/pushpool.db) or a PostgreSQL URL, "
                                "postgresql://user:password@host:5432/dbname (replicas share it).")


def store_settings(store: str | None) -> dict[str, str]:
    """Settings for ``--store``: nothing (the environment's), sqlite, or a PostgreSQL URL."""
    from pushpool.control_plane.errors import InvalidInput

    if not store:
        return {}
    if store == "sqlite":
        return {"store": "sqlite"}
    if store.startswith(("postgresql://", "postgres://")):
        return {"store": "postgresql", "database_url": store}
    if store.startswith("sqlite:///"):
        return {"store": "sqlite", "database_path": store.removeprefix("sqlite://")}
    if store.startswith("dynamodb://") and store.removeprefix("dynamodb://"):
        return {"store": "dynamodb", "dynamodb_table": store.removeprefix("dynamodb://")}
    raise InvalidInput(f"--store: {store!r} is none of sqlite, sqlite:///PATH, postgresql://... or dynamodb://TABLE")


TransferKeyOption = typer.Option(
    None, "--transfer-key-file",
    help="Between stores with different keys (KMS ↔ Fernet, a new key): blocks travel encrypted with the one-off key "
         "in this file (export makes it when absent; import reads it). Keep it apart from the export.")


def transfer_cipher(path: Path | None, *, create: bool):
    """The cipher of the transfer key in ``path`` (made there, owner-only, when absent and ``create``)."""
    import os

    from cryptography.fernet import Fernet

    from pushpool.control_plane.errors import ConfigurationError, InvalidInput
    from pushpool.control_plane.services.crypto import BlockCipher

    if path is None:
        return None
    if not path.exists() and create:
        key = Fernet.generate_key()
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(key + b"\n")
        typer.echo(f"Wrote a new transfer key to {path}: give it to `server import --transfer-key-file`", err=True)
    try:
        return BlockCipher(path.read_text().strip())
    except OSError as exc:
        raise InvalidInput(f"--transfer-key-file: {path}: {exc.strerror}") from None
    except ConfigurationError:
        raise InvalidInput(f"--transfer-key-file: {path} does not hold a Fernet key (export makes one)") from None


@app.command("export")
def export_(
    workspace: str = typer.Option("default", "--workspace", "-w", help="The workspace to export (name or id)."),
    output_file: Path = typer.Option(None, "--output", "-f", help="Write here (default: standard output)."),
    store: str = StoreOption,
    transfer_key_file: Path = TransferKeyOption,
) -> None:
    """Write a workspace's pools, deployments, schedules, blocks (still encrypted), keys and runs as JSON Lines."""
    from pushpool.control_plane.app import build_context
    from pushpool.control_plane.services.transfer import export_workspace
    from pushpool.control_plane.settings import Settings
    from pushpool.control_plane.storage import open_store

    settings = Settings(**store_settings(store))
    source = open_store(settings)
    try:
        cipher = build_context(settings, source).cipher
        transfer = transfer_cipher(transfer_key_file, create=True)
        lines = (json.dumps(line, separators=(",", ":")) + "\n"
                 for line in export_workspace(source, cipher, workspace, transfer))
        if output_file is None:
            for line in lines:
                sys.stdout.write(line)
            return
        with output_file.open("w") as out:
            count = sum(1 for line in lines if out.write(line)) - 1
        typer.echo(f"Exported {count} records of workspace {workspace!r} to {output_file}", err=True)
    finally:
        source.close()


@app.command("import")
def import_(
    input_file: Path = typer.Argument(..., help="A file `pushpool server export` wrote."),
    store: str = StoreOption,
    transfer_key_file: Path = TransferKeyOption,
    output: Output = OutputOption,
) -> None:
    """Write an export into this store (run with the source's PUSHPOOL_ENCRYPTION_KEY); what exists is skipped."""
    from pushpool.control_plane.app import build_context
    from pushpool.control_plane.errors import InvalidInput
    from pushpool.control_plane.services.transfer import import_records, read_export
    from pushpool.control_plane.settings import Settings
    from pushpool.control_plane.storage import open_store

    try:
        with input_file.open() as lines:
            header, records = read_export(lines)
    except OSError as exc:
        raise InvalidInput(f"{input_file}: {exc.strerror}") from None
    settings = Settings(**store_settings(store))
    target = open_store(settings)
    try:
        report = import_records(target, build_context(settings, target).cipher, header, records,
                                transfer_cipher(transfer_key_file, create=False))
    finally:
        target.close()
    result = {"workspace": header.get("workspace"), "imported": dict(report["imported"]),
              "skipped": dict(report["skipped"])}
    emit(result, output, lambda r: f"Imported workspace {r['workspace']!r}: " + (", ".join(
        f"{n} {kind}" for kind, n in sorted(r["imported"].items())) or "nothing new") + (
        f" (already there: {sum(r['skipped'].values())})" if r["skipped"] else ""))


@app.command()
def migrate(store: str = StoreOption, output: Output = OutputOption) -> None:
    """Bring a PostgreSQL store's schema up to this release (start does it too; safe while replicas run)."""
    from pushpool.control_plane.errors import InvalidInput
    from pushpool.control_plane.settings import Settings

    settings = Settings(**store_settings(store))
    if settings.store != "postgresql" or not settings.database_url:
        raise InvalidInput("--store: give the PostgreSQL URL (or PUSHPOOL_STORE=postgresql and "
                           "PUSHPOOL_DATABASE_URL); the SQLite and DynamoDB stores need no migrations")
    from pushpool.control_plane.storage.postgres import PostgresStore, redacted

    store_ = PostgresStore(settings.database_url, migrate=False, check_version=False)
    try:
        applied = store_.migrate()
        version = store_.schema_version()
    finally:
        store_.close()
    emit({"database": redacted(settings.database_url), "applied": applied, "schema_version": version}, output,
         lambda r: (f"Applied migrations {', '.join(map(str, r['applied']))}" if r["applied"] else
                    "Nothing to apply") + f"; {r['database']} is at schema version {r['schema_version']}")


@app.command()
def bootstrap(store: str = StoreOption, output: Output = OutputOption) -> None:
    """Create the first workspace and an owner key in an empty store and print the key (once; safe to re-run).

    For replicas and containers, whose profiles do not outlive them: run it once with the replicas' store and
    PUSHPOOL_ENCRYPTION_KEY (e.g. as a one-off job of the control-plane image)."""
    from pushpool.cli.admin import show_issued_key
    from pushpool.control_plane.app import build_context
    from pushpool.control_plane.bootstrap import bootstrap as create_first_owner
    from pushpool.control_plane.bootstrap import check_shared_key
    from pushpool.control_plane.home import prepare_home
    from pushpool.control_plane.settings import Settings
    from pushpool.control_plane.storage import open_store

    settings = Settings(**store_settings(store))
    prepare_home(settings.home)
    target = open_store(settings)
    try:
        ctx = build_context(settings, target)
        if settings.store == "postgresql":
            check_shared_key(ctx)
        created = create_first_owner(ctx)
    finally:
        target.close()
    if created is None:
        emit({"created": False}, output,
             lambda _: "The store already has a workspace: nothing created (keys are made with `pushpool api-key "
                       "create` or `pushpool service-account create`)")
        return
    workspace, key = created
    show_issued_key({"created": True, "workspace": workspace, "key": key}, output,
                    f"Created workspace {workspace!r} and an owner API key (shown once; keep it in a secret store):")


@app.command()
def image(
    name: str = typer.Argument(..., help="registry/repository to push to, e.g. "
                                         "europe-docker.pkg.dev/PROJECT/pushpool/control-plane."),
    extra: list[str] = typer.Option([], "--extra", "-e",
                                    help="A cloud's SDK for its pushers: aws, gcp, azure, modal, coiled (repeat)."),
    tag: str = typer.Option(None, "--tag", "-t", help="Default: a digest of everything in the image."),
    base_image: str = typer.Option(None, "--base-image", help="Default: python:X.Y-slim for this Python."),
    output: Output = OutputOption,
) -> None:
    """Build this control plane's container image (linux/amd64, no Docker needed) and push it.

    It runs `pushpool server start` on 0.0.0.0:$PORT (8080) as an unprivileged user; see docs/self-hosting.md
    for Cloud Run, Azure Container Apps and Kubernetes."""
    from pushpool.images.server_image import build_server_image

    report = build_server_image(name, tag=tag, base_image=base_image, extras=tuple(extra),
                                quiet=output is Output.json)
    if output is Output.json:
        emit(report.as_dict(), output, str)
        return
    typer.echo(report.reference)  # alone on its line: what the deployment manifests name


@app.command()
def start(
    host: str = typer.Option("127.0.0.1", envvar="PUSHPOOL_HOST", help="Address to bind."),
    port: int = typer.Option(4200, envvar=["PUSHPOOL_PORT", "PORT"],
                             help="Port to bind (PUSHPOOL_PORT, else PORT as container platforms set it)."),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
    store: str = StoreOption,
) -> None:
    """Start the server; on first start, create an owner key and store it in the local profile.

    With --store postgresql://... it is one replica of many: start it on as many machines as you like, behind a
    load balancer, all with the same PUSHPOOL_ENCRYPTION_KEY."""
    from pushpool.control_plane.server import serve
    from pushpool.control_plane.settings import LOOPBACK_HINT, Settings, is_loopback_url

    settings = Settings(host=host, port=port, **store_settings(store))
    api_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"

    def remember_key(workspace: str, key: str) -> None:
        profiles.update_profile(profiles.DEFAULT_PROFILE, {
            "PUSHPOOL_API_URL": api_url, "PUSHPOOL_API_KEY": key, "PUSHPOOL_WORKSPACE": workspace,
        })
        typer.echo(f"Created workspace {workspace!r} and an owner API key; saved to profile "
                   f"{profiles.DEFAULT_PROFILE!r} in {profiles.profiles_path()}")

    typer.echo(f"pushpool server on {api_url} (home {settings.home}); API docs at {api_url}/docs")
    typer.echo(f"Dashboard at {api_url}/ ('pushpool dashboard' prints a link that signs you in)")
    if is_loopback_url(settings.api_url):
        typer.echo("Note: " + LOOPBACK_HINT.format(url=settings.api_url), err=True)
    serve(settings, on_bootstrap=remember_key, log_level=log_level)


def dashboard(
    open_browser: bool = typer.Option(False, "--open", help="Open the link in your web browser."),
    output: Output = OutputOption,
) -> None:
    """A link to the dashboard that fills in the active profile's API key on the sign-in page.

    The key travels in the link's fragment (after ``#``), which browsers never send to a server: only
    your browser and this terminal see it. Do not share the link; it is your key."""
    with get_client() as client:
        client.me()  # the key works, and the server answers: a broken link helps nobody
        url = f"{client.api_url}/sign-in#key={quote(client.api_key or '', safe='')}"
    emit({"url": url}, output, lambda data: data["url"])
    if open_browser:
        import webbrowser

        webbrowser.open(url)
