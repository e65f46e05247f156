"""What a process cleans at start and periodically: only what a dead owner left (API replicas), or everything (a
server alone on its home)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audiencehub.services.home import exclusive, owner_token
from audiencehub.services.landing_zone import LandingZoneService
from audiencehub.services.streaming import StreamingService, batch_id_of
from audiencehub.services.streaming_owners import owner_of

LIVE, DEAD = "host:1:aaaaaaaa", "host:2:bbbbbbbb"
HEX = "0123456789abcdef" * 2


def test_the_home_is_exclusive_with_an_embedded_store_only() -> None:
    assert exclusive(profile_store="duckdb", metadata_url="postgresql://h/db")
    assert exclusive(profile_store="lake", metadata_url="sqlite:////tmp/metadata.db")
    assert not exclusive(profile_store="lake", metadata_url="postgresql://h/db")


def test_a_replica_sweeps_the_partial_uploads_of_dead_owners_only(tmp_path: Path) -> None:
    landing = LandingZoneService(tmp_path, 1024, owner_id="me:3:cccccccc")
    folder = tmp_path / "org" / "prod"
    folder.mkdir(parents=True)
    live = folder / f".a.csv.{owner_token(LIVE)}_{HEX}.part"
    dead = folder / f".b.csv.{owner_token(DEAD)}_{HEX}.part"
    legacy = folder / f".c.csv.{HEX}.part"  # from before owners: nobody's
    mine = folder / f".d.csv.{owner_token('me:3:cccccccc')}_{HEX}.part"
    for path in (live, dead, legacy, mine):
        path.write_bytes(b"half")
    assert landing.sweep_partials([LIVE]) == 2
    assert sorted(p.name for p in folder.iterdir()) == sorted([live.name, mine.name])
    # A server alone on its home sweeps every partial upload.
    assert landing.sweep_partials() == 2 and not any(folder.iterdir())


class _NoBatches:
    def ingest_file(self, *args: Any, **kwargs: Any) -> str:
        raise AssertionError("not called: recover only adopts")

    def validate(self, *args: Any, **kwargs: Any) -> list[list[str]]:
        raise AssertionError("not called")


def _streaming(root: Path, owner: str, live: list[str] | None) -> StreamingService:
    return StreamingService(
        root,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        _NoBatches(),
        flush_seconds=1,
        flush_records=10,
        owner_id=owner,
        live_owners=None if live is None else (lambda: live),
    )


def test_recover_adopts_dead_owners_logs_and_keeps_batch_ids(tmp_path: Path) -> None:
    folder = tmp_path / "org" / "prod" / "_streaming" / "ds1"
    folder.mkdir(parents=True)
    uid = "3f9c8a52-6f0e-4a8e-9a37-2f5b1d0c7e11"
    live_log = folder / f"{1:020d}.{owner_token(LIVE)}_{uid}.log.open"
    dead_log = folder / f"{2:020d}.{owner_token(DEAD)}_{uid}.log.open"
    dead_part = folder / f"{3:020d}.{owner_token(DEAD)}_{uid}.records.jsonl"
    dead_tmp = folder / f"{3:020d}.{owner_token(DEAD)}_{uid}.rejected.jsonl.tmp"
    live_log.write_bytes(b'{"a":1}\n')
    dead_log.write_bytes(b'{"a":2}\n{"torn')
    dead_part.write_bytes(b'{"a":3}\n')
    dead_tmp.write_bytes(b"{")
    before = batch_id_of(dead_part)
    me = "me:3:cccccccc"
    service = _streaming(tmp_path, me, [LIVE])
    assert service.recover() == 2
    names = sorted(p.name for p in folder.iterdir())
    mine = owner_token(me)
    assert names == sorted([live_log.name, f"{2:020d}.{mine}_{uid}.log", f"{3:020d}.{mine}_{uid}.records.jsonl"])
    assert (folder / f"{2:020d}.{mine}_{uid}.log").read_bytes() == b'{"a":2}\n'  # the torn tail cut off
    assert batch_id_of(folder / f"{3:020d}.{mine}_{uid}.records.jsonl") == before  # the same batch after adoption
    assert live_log.read_bytes() == b'{"a":1}\n'  # a live peer's open log is left alone
    # A server alone on its home (no registry to ask) takes every other owner for dead.
    alone = _streaming(tmp_path, "alone:4:dddddddd", None)
    assert alone.recover() == 3
    assert {owner_of(p.name) for p in folder.iterdir()} == {owner_token("alone:4:dddddddd")}
