"""Ingestion benchmark: a full external-audience run through the service layer vs a bare DuckDB COPY.

    .venv/bin/python benchmarks/ingest.py --rows 10000000

Generates an audience CSV (email identity + 5 typed enrichment columns), then measures, each in its
own process so that peak memory is that phase's alone:
  floor:  COPY (SELECT * FROM read_csv(file)) TO 'x.parquet'   (the bare engine, same file, same run)
  ingest: create the audience and run ingestion through the services (validation, errors, dataset
          batch, profile store), from run start to SUCCESS
and prints rows/s, peak RSS and the ratio ingest/floor.

    .venv/bin/python benchmarks/ingest.py --rows 1000000 --engine spark [--spark-master local[2]]

runs the ingest phase on the Spark engine (``audiencehub[spark]``); Spark is started before the clock
starts (its start is printed apart), and the JVM's peak RSS is printed beside Python's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(path: Path, rows: int) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT 'user' || i || '@example.com' AS email, 'L' || (i % 1000) AS list_id,
                (i % 97) * 1.5 AS score, i AS purchases, DATE '2020-01-01' + CAST(i % 2000 AS INTEGER) AS signup_date,
                (i % 2 = 0) AS opted_in
            FROM range({rows}) t(i)) TO '{path}' (HEADER)"""
    )


def phase_floor(csv: Path, work: Path) -> dict[str, float]:
    import duckdb

    con = duckdb.connect()
    start = time.perf_counter()
    con.execute(f"COPY (SELECT * FROM read_csv('{csv}')) TO '{work / 'floor.parquet'}' (FORMAT parquet)")
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib()}


def jvm_peak_rss_mib() -> float | None:
    """The Spark JVM's peak RSS (VmHWM), when this process started one."""
    from audiencehub.engines import spark

    session = spark._shared
    if session is None:
        return None
    pid = session.sparkContext._gateway.proc.pid  # type: ignore[union-attr]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def phase_ingest(csv: Path, work: Path, threshold: float, engine: str, master: str) -> dict[str, object]:
    from audiencehub.config import Settings
    from audiencehub.domain.audiences import AudienceCreate, RunCreate
    from audiencehub.services.auth import Principal
    from audiencehub.wiring import build

    home = work / "home"
    start_s = 0.0
    if engine == "spark":
        from audiencehub.engines.spark import spark_session

        t0 = time.perf_counter()
        spark_session(master, {}, ui=False).sql("SELECT 1").collect()
        start_s = time.perf_counter() - t0
    settings = Settings(
        home=home, workers=1, job_heartbeat_seconds=1.0, engine=engine, spark_master=master, spark_ui=False
    )
    container = build(settings)
    org = container.tenancy.create_org(name="bench")
    principal = Principal(client_id="bench", org_id=org, sandbox="prod")
    landing = container.landing.source(principal.scope).root / "bench"
    landing.mkdir(parents=True, exist_ok=True)
    (landing / "audience.csv").hardlink_to(csv)
    container.runner.start()
    try:
        body = AudienceCreate.model_validate(
            {
                "name": "bench",
                "originName": "CUSTOM_UPLOAD",
                "fields": [
                    {"name": "email", "type": "string", "identityNs": "Email"},
                    {"name": "list_id", "type": "string"},
                    {"name": "score", "type": "number"},
                    {"name": "purchases", "type": "long"},
                    {"name": "signup_date", "type": "date"},
                    {"name": "opted_in", "type": "boolean"},
                ],
                "sourceSpec": {"path": "bench/audience.csv", "type": "file", "cloudType": "DLZ"},
            }
        )
        op_id = container.audiences.create(principal, body)["operationId"]
        audience_id = wait(lambda: container.audiences.operation(principal.scope, op_id).get("audienceId"))
        started = time.perf_counter()
        run = container.audiences.start_run(
            principal, audience_id, RunCreate(dataFilterStartTime=0, errorThresholdPercent=threshold)
        )

        seen: set[tuple[str, bool]] = set()

        def finished() -> dict[str, object] | None:
            view = container.audiences.run(principal.scope, audience_id, run["runId"])
            for stage in view.get("details") or []:  # progress on stderr, which the parent passes through
                for done in (False, True):
                    if (stage["stage"], done) not in seen and (not done or stage.get("finishedAt")):
                        seen.add((stage["stage"], done))
                        state = "finished" if done else "started"
                        elapsed = time.perf_counter() - started
                        print(f"  [{elapsed:6.1f}s] {stage['stage']} {state}", file=sys.stderr, flush=True)
            return view if view["status"] != "PROCESSING" else None

        result = wait(finished, interval=0.05)
        seconds = time.perf_counter() - started
    finally:
        container.close()
    return {
        "seconds": seconds,
        "peak_rss_mib": peak_rss_mib(),
        "jvm_peak_rss_mib": jvm_peak_rss_mib() if engine == "spark" else None,
        "engine_start_seconds": start_s,
        "status": result["status"],
        "run": result,
    }


def wait(probe, interval: float = 0.1, timeout: float = 3600):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("benchmark phase did not finish")


def child(phase: str, csv: Path, work: Path, threshold: float, engine: str, master: str) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--phase",
            phase,
            "--csv",
            str(csv),
            "--work",
            str(work),
            "--threshold",
            str(threshold),
            "--engine",
            engine,
            "--spark-master",
            master,
        ],
        check=True,
        stdout=subprocess.PIPE,  # the result; progress goes to stderr, passed through
        text=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder (default: a temp folder)")
    parser.add_argument("--threshold", type=float, default=5.0)
    parser.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb", help="Engine of the ingest phase")
    parser.add_argument("--spark-master", default="local[2]", help="Spark's master with --engine spark")
    parser.add_argument("--phase", choices=["floor", "ingest"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help="Keep the generated CSV at this path, or reuse it if it exists")
    args = parser.parse_args()

    if args.phase == "floor":
        print(json.dumps(phase_floor(args.csv, args.work)))
        return
    if args.phase == "ingest":
        print(json.dumps(phase_ingest(args.csv, args.work, args.threshold, args.engine, args.spark_master)))
        return

    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        csv = args.csv or work / "audience.csv"
        if csv.exists():  # --csv: a file an earlier run generated and kept (runs on both engines share it)
            print(f"reusing {csv} ({csv.stat().st_size / 1e6:,.0f} MB)", flush=True)
        else:
            t0 = time.perf_counter()
            generate(csv, args.rows)
            size_mb = csv.stat().st_size / 1e6
            print(f"generated {args.rows:,} rows ({size_mb:,.0f} MB) in {time.perf_counter() - t0:.1f}s", flush=True)
        floor = child("floor", csv, work, args.threshold, args.engine, args.spark_master)
        floor_s = float(floor["seconds"])  # type: ignore[arg-type]
        print(
            f"floor   (bare DuckDB COPY csv->parquet): {floor_s:7.2f}s  {args.rows / floor_s:>12,.0f} rows/s  "
            f"peak RSS {floor['peak_rss_mib']:,.0f} MiB",
            flush=True,
        )
        ingest = child("ingest", csv, work, args.threshold, args.engine, args.spark_master)
    ingest_s = float(ingest["seconds"])  # type: ignore[arg-type]
    metrics = ingest["run"]["metrics"]  # type: ignore[index]
    label = "full run, service layer" if args.engine == "duckdb" else f"full run, Spark {args.spark_master}"
    jvm = f"  JVM peak RSS {ingest['jvm_peak_rss_mib']:,.0f} MiB" if ingest.get("jvm_peak_rss_mib") else ""
    print(
        f"ingest  ({label + '):':<32} {ingest_s:7.2f}s  {args.rows / ingest_s:>12,.0f} rows/s  "
        f"peak RSS {ingest['peak_rss_mib']:,.0f} MiB{jvm}  status {ingest['status']}"
    )
    if args.engine == "spark":
        print(f"spark start (not in the ingest figure): {float(ingest['engine_start_seconds']):.2f}s")  # type: ignore[arg-type]
    print(f"ratio ingest/floor: {ingest_s / floor_s:.2f}")
    for stage in ingest["run"]["details"]:  # type: ignore[index]
        print(f"  stage {stage['stage']:<22} {stage['finishedAt'] - stage['startedAt']:>4}s (whole seconds)")
    print(f"run metrics: {json.dumps(metrics)}")


if __name__ == "__main__":
    main()
