"""The ``audiencehub`` command: serve the API, manage orgs, sandboxes and clients, upload files."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn
from urllib.parse import quote

import typer

from audiencehub.config import Settings

if TYPE_CHECKING:
    import httpx

app = typer.Typer(help="audiencehub: a self-hostable audience platform with AEP-compatible APIs.", no_args_is_help=True)
orgs = typer.Typer(help="Orgs (x-gw-ims-org-id).", no_args_is_help=True)
sandboxes = typer.Typer(help="Sandboxes of an org (x-sandbox-name).", no_args_is_help=True)
clients = typer.Typer(help="API clients (x-api-key and client secret).", no_args_is_help=True)
app.add_typer(orgs, name="orgs")
app.add_typer(sandboxes, name="sandboxes")
app.add_typer(clients, name="clients")

CHUNK = 1 << 20
LANDING_ZONE = "/data/foundation/connectors/landingzone"


def _tenancy():  # type: ignore[no-untyped-def]
    from audiencehub.metadata.store import MetadataStore
    from audiencehub.services.tenancy import TenancyService

    settings = Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    store = MetadataStore(settings.metadata_url)
    store.create_all()
    return TenancyService(store)


def _fail(exc: Exception) -> NoReturn:
    detail = getattr(exc, "detail", str(exc))
    typer.echo(f"error: {detail}", err=True)
    raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (AUDIENCEHUB_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (AUDIENCEHUB_PORT or PORT).")] = None,
) -> None:
    """Serve the API with data under $AUDIENCEHUB_HOME (default ./var)."""
    import uvicorn

    from audiencehub.app import create_app
    from audiencehub.services.home import HomeInUse

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        application = create_app(settings)  # takes $AUDIENCEHUB_HOME/.lock: one server per home
    except HomeInUse as exc:
        _fail(exc)
    uvicorn.run(application, host=settings.host, port=settings.port, log_level="info")


@app.command()
def worker(
    threads: Annotated[int | None, typer.Option(help="Job threads (AUDIENCEHUB_WORKERS; default 2).")] = None,
) -> None:
    """Run jobs from the metadata store until SIGTERM or SIGINT, beside `serve` (which may run none of its own:
    AUDIENCEHUB_WORKERS=0). Same settings as the server; on a signal, running jobs get AUDIENCEHUB_WORKER_GRACE_SECONDS
    to finish, and whatever still runs then is recovered by another worker once its heartbeat is stale."""
    from audiencehub.jobs.worker import run_until_signalled
    from audiencehub.wiring import build

    settings = Settings() if threads is None else Settings(workers=threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.workers < 1:
        _fail(
            ValueError(
                f"a worker needs at least one job thread: AUDIENCEHUB_WORKERS or --threads is {settings.workers}"
            )
        )
    container = build(settings, worker_process=True)
    log = logging.getLogger("audiencehub")
    log.info(
        "audiencehub worker %s (pid %d) running jobs of %s", container.runner.worker_id, os.getpid(), settings.home
    )
    if settings.profile_store == "duckdb":
        log.warning(
            "the profile store is the server's embedded DuckDB files, which this process may not open: audience "
            "creation, ingestion runs, segment jobs, export jobs, batches into Profile-enabled datasets and queries "
            "that read the profile table fail here with the reason (AUDIENCEHUB_PROFILE_STORE=lake shares it)"
        )
    try:
        left = run_until_signalled(container.runner, container.schedule, grace_s=settings.worker_grace_seconds)
    finally:
        container.close()
    if left:
        raise typer.Exit(1)  # jobs were cut off: say so to the supervisor


def _schemas():  # type: ignore[no-untyped-def]
    from audiencehub.metadata.store import MetadataStore
    from audiencehub.services.schemas import SchemaService

    settings = Settings()
    store = MetadataStore(settings.metadata_url)
    store.create_all()
    return SchemaService(store)


@orgs.command("create")
def org_create(
    org_id: Annotated[str | None, typer.Option("--id", help="Org id; default a generated ...@AdobeOrg.")] = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    tenant_id: Annotated[
        str | None, typer.Option(help="Tenant id for custom XDM fields (_{TENANT}); default derived from the org id.")
    ] = None,
) -> None:
    """Create an org with its sandbox 'prod'."""
    try:
        created = _tenancy().create_org(org_id, name)
        if tenant_id is not None:
            _schemas().set_tenant_id(created, tenant_id)
        typer.echo(created)
    except Exception as exc:
        _fail(exc)


@orgs.command("tenant-id")
def org_tenant_id(org_id: str, tenant_id: str) -> None:
    """Set an org's tenant id (custom fields live under _{TENANT}); only before it has schemas or field groups."""
    try:
        _schemas().set_tenant_id(org_id, tenant_id)
        typer.echo(tenant_id)
    except Exception as exc:
        _fail(exc)


@orgs.command("list")
def org_list() -> None:
    """List orgs with their sandboxes and client ids."""
    typer.echo(json.dumps(_tenancy().list_orgs(), indent=2))


@sandboxes.command("create")
def sandbox_create(org_id: str, name: str, title: Annotated[str | None, typer.Option()] = None) -> None:
    """Create a sandbox in an org."""
    try:
        _tenancy().create_sandbox(org_id, name, title)
        typer.echo(name)
    except Exception as exc:
        _fail(exc)


@clients.command("create")
def client_create(
    org_id: str,
    client_id: Annotated[str | None, typer.Option(help="Client id; default generated.")] = None,
    secret: Annotated[str | None, typer.Option(help="Client secret; default generated.")] = None,
    name: Annotated[str, typer.Option()] = "API client",
) -> None:
    """Create an API client; prints its secret once (it is stored hashed)."""
    try:
        creds = _tenancy().create_client(org_id, client_id=client_id, secret=secret, name=name)
    except Exception as exc:
        _fail(exc)
    typer.echo(json.dumps(creds.to_json(), indent=2))


def _credentials(home: Path) -> dict[str, str]:
    path = home / "credentials.json"
    return json.loads(path.read_text()) if path.exists() else {}


@app.command()
def upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="Local file to send.")],
    path: Annotated[str, typer.Argument(help="Path in the landing zone, e.g. activation/example.csv.")],
    url: Annotated[str, typer.Option(envvar="AUDIENCEHUB_URL", help="Server base URL.")] = "http://127.0.0.1:8080",
    client_id: Annotated[str | None, typer.Option(envvar="AUDIENCEHUB_CLIENT_ID")] = None,
    client_secret: Annotated[str | None, typer.Option(envvar="AUDIENCEHUB_CLIENT_SECRET")] = None,
    org_id: Annotated[str | None, typer.Option(envvar="AUDIENCEHUB_ORG_ID")] = None,
    sandbox: Annotated[str | None, typer.Option(envvar="AUDIENCEHUB_SANDBOX")] = None,
) -> None:
    """Upload FILE to the landing zone at PATH, with a progress bar.

    Credentials come from the options, their environment variables, or
    $AUDIENCEHUB_HOME/credentials.json (written on the server's first start).
    """
    import httpx

    from audiencehub.domain.paths import landing_zone_key

    try:
        landing_zone_key(path)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    saved = _credentials(Path(os.environ.get("AUDIENCEHUB_HOME", "./var")))
    cid = client_id or saved.get("client_id")
    secret = client_secret or saved.get("client_secret")
    org = org_id or saved.get("org_id")
    box = sandbox or saved.get("sandbox", "prod")
    if not (cid and secret and org):
        typer.echo("error: no credentials: pass --client-id, --client-secret and --org-id", err=True)
        raise typer.Exit(2)
    base = url.rstrip("/")
    try:
        resp = _send(file, base, quote(path, safe="/"), client_id=cid, client_secret=secret, org_id=org, sandbox=box)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        typer.echo(f"error: cannot reach {base}: {exc}; is the server running? (--url)", err=True)
        raise typer.Exit(1) from None
    except httpx.HTTPError as exc:
        typer.echo(f"error: the request to {base} failed: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    if resp.status_code != 201:
        typer.echo(f"error: upload failed ({resp.status_code}): {resp.text}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(resp.json()))


def _send(
    file: Path, base: str, quoted_path: str, *, client_id: str, client_secret: str, org_id: str, sandbox: str
) -> httpx.Response:
    """Gets a token and PUTs ``file`` at the (URL-encoded) landing-zone path, with a progress bar."""
    import httpx
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with httpx.Client(timeout=httpx.Timeout(60.0, write=None, read=600.0)) as http:
        headers = _api_headers(
            http, base, client_id=client_id, client_secret=client_secret, org_id=org_id, sandbox=sandbox
        )
        headers["Content-Type"] = "application/octet-stream"
        size = file.stat().st_size
        with Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn()
        ) as bar:
            task = bar.add_task(f"uploading {file.name}", total=size)

            def chunks() -> Iterator[bytes]:
                with file.open("rb") as fh:
                    while block := fh.read(CHUNK):
                        bar.advance(task, len(block))
                        yield block

            headers["Content-Length"] = str(size)
            return http.put(f"{base}{LANDING_ZONE}/{quoted_path}", content=chunks(), headers=headers)


@app.command("cja-transform")
def cja_transform(
    dataset: Annotated[str, typer.Option(help="The export job's dataset id (seed 002's export).")],
    person_field: Annotated[
        str, typer.Option(help="The person id field of the exported rows, e.g. _demoemea.identification.core.email.")
    ],
    audience: Annotated[list[str], typer.Option(help="An audience id to report on; repeat for several.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the JSON.")] = Path(
        "audience-memberships.json"
    ),
    tenant: Annotated[str | None, typer.Option(help="Tenant name, e.g. _demoemea; default the org's.")] = None,
    status: Annotated[list[str] | None, typer.Option(help="Membership status to keep (default realized).")] = None,
    per_person: Annotated[bool, typer.Option(help="One object per person with a list of memberships.")] = False,
    ingest: Annotated[
        bool, typer.Option(help="Also ingest the JSON into a dataset of a schema made for it (seed 002's steps).")
    ] = False,
    schema_name: Annotated[
        str, typer.Option(help="With --ingest: the schema's title.")
    ] = "Audience Export for CJA Schema",
    dataset_name: Annotated[str, typer.Option(help="With --ingest: the dataset's name.")] = "Audience Export for CJA",
    url: Annotated[str, typer.Option(envvar="AUDIENCEHUB_URL", help="Server base URL.")] = "http://127.0.0.1:8080",
    client_id: Annotated[str | None, typer.Option(envvar="AUDIENCEHUB_CLIENT_ID")] = None,
    client_secret: Annotated[str | None, typer.Option(envvar="AUDIENCEHUB_CLIENT_SECRET")] = None,
    org_id: Annotated[str | None, typer.Option(envvar="AUDIENCEHUB_ORG_ID")] = None,
    sandbox: Annotated[str | None, typer.Option(envvar="AUDIENCEHUB_SANDBOX")] = None,
) -> None:
    """Seed 002's "Transform JSON" step: the export's memberships as CJA's JSON (personID, _{TENANT}.audience
    MembershipId and audienceMembershipName), written to --output; with --ingest, also ingested into a dataset.

    Calls the server's POST /data/core/ups/cja/transform; credentials as for upload.
    """
    import httpx

    saved = _credentials(Path(os.environ.get("AUDIENCEHUB_HOME", "./var")))
    cid, secret = client_id or saved.get("client_id"), client_secret or saved.get("client_secret")
    org, box = org_id or saved.get("org_id"), sandbox or saved.get("sandbox", "prod")
    if not (cid and secret and org):
        typer.echo("error: no credentials: pass --client-id, --client-secret and --org-id", err=True)
        raise typer.Exit(2)
    body: dict[str, object] = {
        "datasetId": dataset,
        "personIdField": person_field,
        "audienceIds": audience,
        "statuses": status or ["realized"],
        "perPerson": per_person,
    }
    if tenant:
        body["tenant"] = tenant
    if ingest:
        body["ingest"] = {"schemaName": schema_name, "datasetName": dataset_name}
    base = url.rstrip("/")
    try:
        with httpx.Client(timeout=httpx.Timeout(60.0, read=3600.0)) as http:
            headers = _api_headers(http, base, client_id=cid, client_secret=secret, org_id=org, sandbox=box)
            with http.stream("POST", f"{base}/data/core/ups/cja/transform", json=body, headers=headers) as resp:
                if resp.status_code != 200:
                    typer.echo(f"error: the transform failed ({resp.status_code}): {resp.read().decode()}", err=True)
                    raise typer.Exit(1)
                if ingest:
                    typer.echo(resp.read().decode())
                    return
                with output.open("wb") as out:
                    for chunk in resp.iter_bytes(CHUNK):
                        out.write(chunk)
                typer.echo(json.dumps({"records": int(resp.headers.get("x-record-count", "0")), "file": str(output)}))
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        typer.echo(f"error: cannot reach {base}: {exc}; is the server running? (--url)", err=True)
        raise typer.Exit(1) from None


def _api_headers(
    http: httpx.Client, base: str, *, client_id: str, client_secret: str, org_id: str, sandbox: str
) -> dict[str, str]:
    """AEP's four headers, with a token from the server's /ims/token/v3."""
    tok = http.post(
        f"{base}/ims/token/v3",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            "scope": "openid",
        },
    )
    if tok.status_code != 200:
        typer.echo(f"error: token request failed ({tok.status_code}): {tok.text}", err=True)
        raise typer.Exit(1)
    return {
        "Authorization": f"Bearer {tok.json()['access_token']}",
        "x-api-key": client_id,
        "x-gw-ims-org-id": org_id,
        "x-sandbox-name": sandbox,
    }


def main() -> None:
    app()
