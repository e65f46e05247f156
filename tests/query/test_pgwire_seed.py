"""Seed 002's query, unchanged, from psql: explode() of the membership map, ROW_NUMBER(), ::text, a subquery
without alias; run by the Query Service's executor on an export dataset's shape."""

from __future__ import annotations

import csv
import io
import os
import subprocess

from audiencehub.query.duckdb import DuckDBSession
from audiencehub.query.session import QuerySession
from tests.query.pgwire_support import serving

SEED_QUERY = """SELECT ROW_NUMBER() OVER (ORDER BY key)::text as _id, personID, key as audienceMembershipId
FROM (
   SELECT _demoemea.identification.core.email AS personID, explode(segmentMembership.ups)
   FROM segment_export_job_dataset_for_cja
)
WHERE value.status = 'realized' AND (key = 's1' OR key = 's2' OR key = 's3')"""


class OneSession:
    """A backend whose every login gets the one session: the executor alone, without the platform around it."""

    def __init__(self, session: QuerySession) -> None:
        self.session = session

    def open(self, *, user: str, password: str, database: str) -> QuerySession:
        return self.session


def test_the_seed_query_runs_unchanged_from_psql(session: DuckDBSession) -> None:
    with serving(OneSession(session)) as port:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("PG")}, "PGPASSWORD": "token"}
        command = ["psql", "-X", "--csv", "-h", "127.0.0.1", "-p", str(port), "-U", "ORG@AdobeOrg", "-d", "prod:all"]
        done = subprocess.run([*command, "-c", SEED_QUERY], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert sorted(r["_id"] for r in rows) == ["1", "2", "3", "4"]
    got = sorted((r["personID"], r["audienceMembershipId"]) for r in rows)
    assert got == [("a@x.com", "s1"), ("b@x.com", "s1"), ("b@x.com", "s3"), ("c@x.com", "s2")]
    assert [r["audienceMembershipId"] for r in sorted(rows, key=lambda r: int(r["_id"]))] == ["s1", "s1", "s2", "s3"]


def test_psql_shows_the_membership_map_as_json(session: DuckDBSession) -> None:
    with serving(OneSession(session)) as port:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("PG")}, "PGPASSWORD": "token"}
        command = ["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(port), "-U", "ORG@AdobeOrg", "-d", "prod"]
        sql = "SELECT segmentMembership FROM segment_export_job_dataset_for_cja WHERE person.name.firstName = 'Ann'"
        done = subprocess.run([*command, "-c", sql], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        '{"ups":{"s1":{"status":"realized","lastQualificationTime":"2024-05-01T00:00:00+00:00"},'
        '"s2":{"status":"exited","lastQualificationTime":"2024-05-01T00:00:00+00:00"}}}'
    )
