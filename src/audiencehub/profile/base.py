"""The profile store: identities, profiles and audience memberships.

One interface; the embedded backend is a DuckDB database per sandbox (``profile/duckdb.py``),
the scale-out one will be Parquet tables in the lake. Both follow one rule: a run's changes
appear all at once or not at all, and applying the same run twice changes nothing the second time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audiencehub.domain.audiences import FieldType
from audiencehub.domain.segments import Plan, SegmentCounts
from audiencehub.errors import InternalError
from audiencehub.metadata.store import Scope
from audiencehub.profile.exports import ExportOutput, ExportSpec

if TYPE_CHECKING:
    import pyarrow as pa


class ProfileStoreFailed(InternalError):
    """The profile store itself failed mid-operation (e.g. it ran out of memory); ``detail`` says why, for the run or
    job that failed, and keeps the engine's message. The operation changed nothing; the next one may succeed (the
    embedded store reopens a database that a fatal error invalidated)."""


@dataclass(frozen=True)
class IdentityColumn:
    column: str
    namespace: str
    """The identity namespace code, e.g. ``Email``."""


@dataclass(frozen=True)
class AudienceRows:
    """The accepted rows of one run, as the DATASET_INGEST stage left them (validated Parquet files)."""

    run_id: str
    audience_id: str
    namespace: str
    """The audience's membership namespace (``CustomerAudienceUpload`` by default)."""
    ttl_days: int
    """The audience's ttl when the run started; recorded only for an audience the store has no record of
    (``set_audience`` keeps the current one, e.g. after a PATCH while the run processed)."""
    files: list[Path]
    """Validated files in processing order; within a file, row order is file order. Last row wins."""
    identities: list[IdentityColumn]
    """Identity columns in field order; the first non-empty one resolves the profile."""
    payload: list[tuple[str, FieldType]]
    """Enrichment attributes that travel with the membership."""
    delete_column: tuple[str, FieldType] | None
    replace: bool
    """True for a full (non-differential) run: members absent from the files exit."""
    qualified_at: int
    """Epoch seconds recorded as ``lastQualificationTime``."""


@dataclass(frozen=True)
class FragmentBatch:
    """The records of one successful batch of a profile-enabled dataset (``engines/xdm_sql`` validated them)."""

    batch_id: str
    dataset_id: str
    kind: str
    """``profile`` (attributes, merged across datasets), ``event`` (experience events, kept one by one) or
    ``entity`` (records of a non-people class, e.g. segment definitions: kept apart from people profiles)."""
    file: Path
    """The validated Parquet file: the typed fields, ``__ah_ids``, ``__ah_file`` and ``__ah_rn``."""
    leaves: list[tuple[str, str, str]]
    """(dotted name, SQL type, SQL that reads it from the typed columns) of every value the store keeps."""
    received_at: float
    """Epoch seconds (with their fraction): the fragments' timestamp for the timestamp-ordered merge."""


@dataclass
class FragmentResult:
    records: int = 0
    profilesCreated: int = 0
    profilesMerged: int = 0
    identitiesAdded: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Entity:
    """A merged profile (or a non-people entity) as the Profile Access API answers it."""

    entity_id: str
    identities: list[tuple[str, str]]
    attributes: dict[str, Any]
    """The merged values by dotted name."""
    sources: list[str]
    """The datasets that contributed a fragment."""
    memberships: list[Membership]
    last_modified: int
    """Epoch seconds of the newest fragment or membership."""


@dataclass
class ApplyResult:
    profilesCreated: int = 0
    profilesUpdated: int = 0
    membersRealized: int = 0
    membersExited: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Membership:
    namespace: str
    audience_id: str
    status: str
    last_qualification_time: int
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Profile:
    profile_id: str
    identities: list[tuple[str, str]]
    memberships: list[Membership]


class ProfileStore(ABC):
    @abstractmethod
    def apply_audience(self, scope: Scope, rows: AudienceRows) -> ApplyResult:
        """Resolves rows to profiles and records memberships, atomically; idempotent per run id."""

    @abstractmethod
    def applied(self, scope: Scope, run_id: str) -> ApplyResult | None:
        """The result recorded when ``run_id`` was applied, or None if it never was."""

    @abstractmethod
    def set_audience(self, scope: Scope, audience_id: str, namespace: str, ttl_days: int) -> None:
        """Records an audience's namespace and ttl (memberships older than ttl read as exited); it overrides
        whatever a run recorded."""

    @abstractmethod
    def remove_audience(self, scope: Scope, audience_id: str) -> None:
        """Removes every membership of the audience."""

    @abstractmethod
    def lookup(self, scope: Scope, namespace: str, identity: str) -> Profile | None:
        """The profile that holds the identity, with all its identities and memberships."""

    @abstractmethod
    def members(self, scope: Scope, audience_id: str, *, limit: int, offset: int) -> tuple[list[Profile], int]:
        """One page of the audience's members (every status) and their total count."""

    @abstractmethod
    def counts(self, scope: Scope, audience_id: str) -> dict[str, int]:
        """How many members have each effective status."""

    @abstractmethod
    def apply_fragments(self, scope: Scope, batch: FragmentBatch) -> FragmentResult:
        """Stitches the batch's identities into the graph and stores its records, atomically; idempotent per
        batch id. Identities seen in one record link: profiles they joined are merged into one."""

    @abstractmethod
    def batch_applied(self, scope: Scope, batch_id: str) -> bool:
        """Whether ``apply_fragments`` committed the batch."""

    @abstractmethod
    def entity(
        self, scope: Scope, namespace: str, identity: str, *, kind: str = "profile", precedence: list[str] | None = None
    ) -> Entity | None:
        """The merged profile that holds the identity (``kind="entity"``: the non-people record with that
        primary identity). ``precedence`` (dataset ids, highest first) merges by dataset precedence; None merges
        by time (the newest value of each attribute wins)."""

    @abstractmethod
    def remove_dataset(self, scope: Scope, dataset_id: str) -> None:
        """Drops every fragment the dataset contributed."""

    @abstractmethod
    def evaluate(
        self, scope: Scope, job_id: str, plans: list[Plan], ttl_days: dict[str, int]
    ) -> dict[str, SegmentCounts]:
        """Evaluates the plans in order (a plan may read the segments an earlier one wrote) and folds each segment's
        result into its memberships (namespace ``ups``, ``ttl_days`` per segment), all in one transaction: after a
        failure nothing has changed."""

    @abstractmethod
    def evaluation(self, scope: Scope, job_id: str) -> dict[str, SegmentCounts] | None:
        """The counts ``evaluate`` committed for the job, or None if it never committed."""

    @abstractmethod
    def count_profiles(self, scope: Scope) -> int:
        """How many profiles the sandbox holds."""

    @abstractmethod
    def record_segments(self, scope: Scope, segment_id: str) -> list[str]:
        """The namespaces under which profile records carry a membership of ``segment_id`` (their own
        ``segmentMembership``, e.g. audiences imported as in seed 000)."""

    @abstractmethod
    def close(self) -> None:
        """Releases open databases."""

    @abstractmethod
    def snapshot(
        self, scope: Scope, *, precedence: list[str] | None = None, batch_rows: int = 65_536
    ) -> pa.RecordBatchReader:
        """Every merged profile of the sandbox as a stream of Arrow batches (the Query Service's profile table):
        the merged attributes nested under their top-level fields, ``identityMap`` and ``segmentMembership`` (namespace
        → audience id → {status, lastQualificationTime}). ``precedence`` as in :meth:`entity`."""

    @abstractmethod
    def export(self, scope: Scope, spec: ExportSpec, outputs: list[ExportOutput]) -> list[int]:
        """Writes the profiles each output selects to its Parquet file as XDM rows (the spec's fields nested,
        ``identityMap`` when asked, and always ``segmentMembership``: every membership of the profile), all outputs
        from one snapshot of the store; answers how many rows each file got."""
