"""Remote-fetch benchmark: a run's copy of a remote file into staging vs the bare client, same server, same run.

    .venv/bin/python benchmarks/sources.py --mib 256 --backend all

Generates a CSV file of ``--mib`` MiB, puts it on a local server, then measures, each in its own process
so that peak memory is that phase's alone:
  s3   floor: bare boto3 ``get_object(...)["Body"]`` read in 8 MiB chunks into a local file (moto server)
       ours:  the S3 source as the server builds it (``backend_for`` + ``RetryingSource``) copied by ``Fetcher``
  sftp floor: bare asyncssh ``sftp.get(remote, local)`` (its parallel-request download)
       ours:  ``SftpSource`` + ``RetryingSource`` copied by ``Fetcher``
The SFTP server runs in a process of its own (in-process it would compete with the client for the GIL).
Every copy is checked for size and sha256 (outside the timing). Prints seconds, MiB/s, the client process's
CPU seconds and minor page faults, peak RSS, and the ratio ours/floor (time); with ``--repeat N`` each phase
copies N times and the fastest copy counts. ``--profile`` adds a cProfile of the 'ours' phases, per thread.
On a small or busy machine wall times vary from run to run; CPU seconds and faults are the steadier signal.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CHUNK = 8 << 20
"""The floor's read size: the same as ``audiencehub.services.ingestion.FETCH_CHUNK``."""
BUCKET = "bench"
FOLDER = "drop/zone"
NAME = "audience.csv"

SFTP_SERVER = """
import json, sys
from pathlib import Path
from tests.servers.sftp import SftpServer
server = SftpServer(root=Path(sys.argv[1]))
info = {"port": server.port, "host_key": server.host_key_openssh, "user": server.user, "password": server.password}
print(json.dumps(info), flush=True)
try:
    sys.stdin.read()
finally:
    server.stop()
"""


def peak_rss_mib() -> float:
    """This process's own peak RSS: VmHWM where Linux has it.

    ``ru_maxrss`` would do elsewhere, but on Linux it carries over the parent's RSS at fork through exec,
    so a phase started by a parent that holds more memory would report the parent's figure.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the file ------------------------------------------------------------------------------------


def generate(path: Path, mib: int) -> None:
    """A header and ``mib`` copies of one random 1 MiB block of CSV rows."""
    rows = []
    size = 0
    i = 0
    while True:
        row = f"{os.urandom(6).hex()}{i}@example.com,L{i % 1000},{(i % 97) * 1.5},{i},2020-01-{i % 28 + 1:02d},true\n"
        if size + len(row) > (1 << 20) - 64:
            break
        rows.append(row)
        size += len(row)
        i += 1
    block = "".join(rows).encode()
    block += b"pad@example.com,L0,0.0,0,2020-01-01," + b"x" * ((1 << 20) - len(block) - 37) + b"\n"
    assert len(block) == 1 << 20
    with path.open("wb") as out:
        out.write(b"email,list_id,score,purchases,signup_date,opted_in\n")
        for _ in range(mib):
            out.write(block)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- phases (each in its own process) ------------------------------------------------------------


PROFILERS: list[Any] = []
"""With ``--profile``, the phase's cProfile profilers, one per thread; ``timed`` clears them before it starts."""


def timed(copy: Any, out: Path, repeat: int) -> dict[str, Any]:
    """Runs ``copy(out)`` ``repeat`` times (removing ``out`` in between); the last copy is left for checking.

    Besides wall time, each copy's process CPU time and minor page faults are kept (those of the fastest
    copy are reported): the client is CPU-bound here, and fresh large buffers show up as page faults.
    """
    rss_before = peak_rss_mib()
    for prof in PROFILERS:
        prof.clear()  # profile the copies, not the imports and the connection set-up
    runs = []
    for i in range(repeat):
        out.unlink(missing_ok=True)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start, cpu = time.perf_counter(), time.process_time()
        written = copy(out)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        runs.append((seconds, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))
        if i + 1 < repeat:
            written.unlink()
    seconds, cpu, faults = min(runs)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "minor_faults": faults,
        "all_seconds": [r[0] for r in runs],
        "file": str(written),
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_mib": rss_before,
    }


def stored_source(spec_id: str, auth_name: str, params: dict[str, Any]) -> Any:
    """The source as the server builds it for a run: ``backend_for`` wrapped in the default retry policy."""
    from audiencehub.domain.connections import find_spec, validate_params
    from audiencehub.services.connections import StoredConnection
    from audiencehub.sources.retry import RetryingSource, RetryPolicy
    from audiencehub.wiring import backend_for

    spec = find_spec(spec_id)
    assert spec is not None
    auth = spec.auth_spec(auth_name)
    assert auth is not None
    merged = validate_params(spec, auth, params).merged
    stored = StoredConnection("bench", "bench", spec, auth, merged)
    return RetryingSource(backend_for(stored), RetryPolicy(), redact=stored.redact)


def fetch_with(source: Any, rel: str) -> Any:
    """A copy function for ``timed``: the run's own ``Fetcher`` (progress ignored) on one file.

    The ``stat`` is done once, outside the timing: a run does it while choosing files, before the fetch.
    """
    from audiencehub.services.ingestion import Fetcher

    info = source.stat(rel)
    return lambda out: Fetcher(lambda percent, **extra: None, info.size)(source, info, out.parent, 0)


def phase_s3_floor(cfg: dict[str, Any], work: Path, repeat: int) -> dict[str, Any]:
    from tests.servers.s3 import isolated_session

    client = isolated_session().client(
        "s3",
        endpoint_url=cfg["endpoint"],
        region_name=cfg["region"],
        aws_access_key_id=cfg["access_key"],
        aws_secret_access_key=cfg["secret_key"],
    )

    client.head_object(Bucket=BUCKET, Key=f"{FOLDER}/{NAME}")  # connected before the timing, as ours is

    def copy(out: Path) -> Path:
        body = client.get_object(Bucket=BUCKET, Key=f"{FOLDER}/{NAME}")["Body"]
        with out.open("wb") as f:
            while chunk := body.read(CHUNK):
                f.write(chunk)
        body.close()
        return out

    return timed(copy, work / "s3-floor.csv", repeat)


def phase_s3_ours(cfg: dict[str, Any], work: Path, repeat: int) -> dict[str, Any]:
    from audiencehub.domain.connections import S3_SPEC_ID

    params = {
        "s3AccessKey": cfg["access_key"],
        "s3SecretKey": cfg["secret_key"],
        "serviceUrl": cfg["endpoint"],
        "region": cfg["region"],
        "bucketName": BUCKET,
        "folderPath": FOLDER,
    }
    source = stored_source(S3_SPEC_ID, "Access Key", params)
    try:
        return timed(fetch_with(source, NAME), work / "s3-ours" / "00000.csv", repeat)
    finally:
        source.close()


def phase_sftp_floor(cfg: dict[str, Any], work: Path, repeat: int) -> dict[str, Any]:
    import asyncio

    import asyncssh

    async def main() -> dict[str, Any]:
        key = asyncssh.import_public_key(cfg["host_key"])
        async with (
            asyncssh.connect(
                "127.0.0.1",
                cfg["port"],
                username=cfg["user"],
                password=cfg["password"],
                known_hosts=([key], [], []),
                preferred_auth="password,keyboard-interactive",
                agent_path=None,
                config=None,
            ) as conn,
            conn.start_sftp_client() as sftp,
        ):
            loop = asyncio.get_running_loop()

            def copy(out: Path) -> Path:
                # timed() is synchronous: run each get to completion on this loop from a worker thread.
                asyncio.run_coroutine_threadsafe(sftp.get(f"/drop/{NAME}", str(out)), loop).result()
                return out

            return await asyncio.to_thread(timed, copy, work / "sftp-floor.csv", repeat)

    return asyncio.run(main())


def phase_sftp_ours(cfg: dict[str, Any], work: Path, repeat: int) -> dict[str, Any]:
    from audiencehub.domain.connections import SFTP_SPEC_ID

    params = {
        "host": "127.0.0.1",
        "port": cfg["port"],
        "userName": cfg["user"],
        "password": cfg["password"],
        "folderPath": "/drop",
        "knownHostKey": cfg["host_key"],
    }
    source = stored_source(SFTP_SPEC_ID, "Basic Authentication for sftp", params)
    try:
        return timed(fetch_with(source, NAME), work / "sftp-ours" / "00000.csv", repeat)
    finally:
        source.close()


PHASES = {
    "s3-floor": phase_s3_floor,
    "s3-ours": phase_s3_ours,
    "sftp-floor": phase_sftp_floor,
    "sftp-ours": phase_sftp_ours,
}


def run_phase(phase: str, cfg: dict[str, Any], work: Path, repeat: int, profile: Path | None) -> dict[str, Any]:
    if profile is None:
        return PHASES[phase](cfg, work, repeat)
    import cProfile
    import pstats
    import threading

    # Every thread (the SFTP source's event loop runs in one of its own) gets its own profiler.
    def start(*_: Any) -> None:
        prof = cProfile.Profile()
        PROFILERS.append(prof)
        prof.enable()

    threading.setprofile(start)  # the first event in a new thread starts that thread's profiler
    start()
    try:
        return PHASES[phase](cfg, work, repeat)
    finally:
        for prof in PROFILERS:
            prof.disable()
        threading.setprofile(None)
        with profile.open("w") as out:
            for n, prof in enumerate(PROFILERS):
                try:
                    stats = pstats.Stats(prof, stream=out)
                except TypeError:  # pstats refuses a profiler that recorded nothing
                    continue
                out.write(f"=== thread profile {n} ===\n")
                stats.sort_stats("tottime").print_stats(25)


def child(phase: str, cfg: dict[str, Any], work: Path, repeat: int, profile: Path | None) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--phase", phase, "--config", json.dumps(cfg), "--work", str(work)]
    argv += ["--repeat", str(repeat)]
    if profile is not None:
        argv += ["--profile-to", str(profile)]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"phase {phase} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- servers -------------------------------------------------------------------------------------


class SftpProcess:
    """``tests.servers.sftp.SftpServer`` in a child process; it stops when its stdin closes."""

    def __init__(self, root: Path) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", SFTP_SERVER, str(root)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError("the SFTP server process exited before printing its port")
        self.info: dict[str, Any] = json.loads(line)

    def stop(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)


def measure(
    backend: str, cfg: dict[str, Any], work: Path, size: int, digest: str, repeat: int, profile: bool
) -> dict[str, dict[str, Any]]:
    results = {}
    for kind in ("floor", "ours"):
        phase = f"{backend}-{kind}"
        prof = work / f"{phase}.prof.txt" if profile and kind == "ours" else None
        result = child(phase, cfg, work, repeat, prof)
        copy = Path(result["file"])
        got = copy.stat().st_size
        if got != size:
            raise RuntimeError(f"{phase}: copied {got} bytes, the file has {size}")
        if sha256(copy) != digest:
            raise RuntimeError(f"{phase}: the copy's sha256 differs from the file's")
        copy.unlink()
        if prof is not None:
            result["profile"] = prof.read_text()
        results[kind] = result
        print(f"  {phase:<11} {result['seconds']:7.2f}s  (size and sha256 verified)", flush=True)
    return results


def bench_s3(csv: Path, work: Path, size: int, digest: str, repeat: int, profile: bool) -> dict[str, dict[str, Any]]:
    from boto3.s3.transfer import TransferConfig
    from tests.servers.s3 import MotoServer

    server = MotoServer()
    try:
        server.make_bucket(BUCKET)
        t0 = time.perf_counter()
        upload = TransferConfig(multipart_chunksize=CHUNK)
        server.client().upload_file(str(csv), BUCKET, f"{FOLDER}/{NAME}", Config=upload)
        print(f"s3: moto on {server.endpoint}, uploaded in {time.perf_counter() - t0:.1f}s", flush=True)
        cfg = {
            "endpoint": server.endpoint,
            "region": server.region,
            "access_key": server.access_key,
            "secret_key": server.secret_key,
        }
        return measure("s3", cfg, work, size, digest, repeat, profile)
    finally:
        server.stop()


def bench_sftp(csv: Path, work: Path, size: int, digest: str, repeat: int, profile: bool) -> dict[str, dict[str, Any]]:
    root = work / "sftp-root"
    (root / "drop").mkdir(parents=True, exist_ok=True)
    (root / "drop" / NAME).hardlink_to(csv)
    server = SftpProcess(root)
    try:
        print(f"sftp: asyncssh server process on port {server.info['port']}", flush=True)
        return measure("sftp", server.info, work, size, digest, repeat, profile)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256, help="Size of the generated file in MiB (default 256)")
    parser.add_argument("--backend", choices=["s3", "sftp", "all"], default="all")
    parser.add_argument("--repeat", type=int, default=1, help="Copies per phase; the best time counts (default 1)")
    parser.add_argument("--profile", action="store_true", help="cProfile the 'ours' phases and print the top entries")
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder (default: a temp folder)")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        print(json.dumps(run_phase(args.phase, json.loads(args.config), args.work, args.repeat, args.profile_to)))
        return

    backends = ["s3", "sftp"] if args.backend == "all" else [args.backend]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        csv = work / NAME
        t0 = time.perf_counter()
        generate(csv, args.mib)
        size = csv.stat().st_size
        digest = sha256(csv)
        print(f"generated {size / (1 << 20):,.1f} MiB in {time.perf_counter() - t0:.1f}s", flush=True)
        for backend in backends:
            bench = bench_s3 if backend == "s3" else bench_sftp
            results[backend] = bench(csv, work, size, digest, args.repeat, args.profile)

    mib = size / (1 << 20)
    print()
    print(
        f"{'phase':<12} {'what':<44} {'seconds':>8} {'MiB/s':>8} {'CPU s':>6} {'faults':>7} "
        f"{'peak RSS MiB':>13} {'(before copy)':>14}"
    )
    what = {
        "s3-floor": "bare boto3 get_object, 8 MiB reads",
        "s3-ours": "backend_for S3 + RetryingSource + Fetcher",
        "sftp-floor": "bare asyncssh sftp.get (parallel requests)",
        "sftp-ours": "SftpSource + RetryingSource + Fetcher",
    }
    for backend, pair in results.items():
        for kind, r in pair.items():
            phase = f"{backend}-{kind}"
            print(
                f"{phase:<12} {what[phase]:<44} {r['seconds']:8.2f} {mib / r['seconds']:8.1f} {r['cpu_seconds']:6.2f} "
                f"{r['minor_faults']:7} {r['peak_rss_mib']:13,.0f} {r['rss_before_mib']:14,.0f}"
            )
    print()
    summary: dict[str, Any] = {"mib": round(mib, 1), "repeat": args.repeat}
    for backend, pair in results.items():
        ratio = pair["ours"]["seconds"] / pair["floor"]["seconds"]
        print(f"ratio {backend} ours/floor (time): {ratio:.2f}")
        summary[backend] = {
            "ratio": round(ratio, 3),
            **{
                kind: {
                    "seconds": round(r["seconds"], 3),
                    "mib_s": round(mib / r["seconds"], 1),
                    "cpu_seconds": round(r["cpu_seconds"], 3),
                    "minor_faults": r["minor_faults"],
                    "peak_rss_mib": round(r["peak_rss_mib"], 1),
                }
                for kind, r in pair.items()
            },
        }
        if "profile" in pair["ours"]:
            print(f"\n--- cProfile of {backend}-ours (per thread, by own time) ---\n{pair['ours']['profile']}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
