"""The writes of the lake profile store that change its identity graph: a profile-enabled dataset's batch kept as
fragments (``f_{dataset hex}``, the embedded store's names and columns, with records' own memberships in
``fragment_memberships``), its records stitched into profiles, and the merge of the profiles that a record or an
audience's row links (the embedded store's ``profile/graph.py``) in every table of the version that holds profile ids.

Each function works on one write (``lake_work.Work``: the version being built and the engine session that builds it);
:class:`lake.LakeProfileStore` decides whether the work is needed and commits it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from audiencehub.engines.ingest_sql import ident, lit, path_list
from audiencehub.profile import lake_sql as q
from audiencehub.profile.base import AudienceRows, FragmentBatch, FragmentResult
from audiencehub.profile.columns import MEMBERSHIP_LEAF, PROFILE_ID, fragment_table_for

if TYPE_CHECKING:
    from audiencehub.profile.lake_work import Work


def apply_batch(w: Work, batch: FragmentBatch) -> FragmentResult:
    """Keeps a batch's records as fragments of its dataset (people stitched into profiles first) and marks the batch
    applied."""
    at = q.timestamp(batch.received_at)
    values = [(name, expr) for name, _, expr in batch.leaves if name != MEMBERSHIP_LEAF]
    has_memberships = any(name == MEMBERSHIP_LEAF for name, _, _ in batch.leaves)
    table, columns = fragment_table(w, batch)
    rec, records = w.temp("rec", q.records_sql(batch.file, values, has_memberships))
    result = FragmentResult(records=records)
    names = {name for name, _ in values}
    if batch.kind == "entity":
        # Non-people records (segment definitions): keyed by their primary identity, never stitched.
        w.append(table, q.entity_fragments_sql(rec, columns, names, batch.batch_id, at))
    else:
        rec_profile = stitch(w, rec, result)
        w.append(table, q.profile_fragments_sql(rec, rec_profile, columns, names, batch.batch_id, at))
        if has_memberships:
            w.append(q.FRAGMENT_MEMBERSHIPS, q.record_memberships_sql(rec, rec_profile, at, batch.dataset_id))
    w.append(
        q.APPLIED_BATCHES,
        q.applied_batch_sql(batch.batch_id, batch.dataset_id, at, json.dumps(result.to_dict())),
    )
    w.compact()
    return result


def fragment_table(w: Work, batch: FragmentBatch) -> tuple[str, list[tuple[str, str]]]:
    """The dataset's fragment table and its columns, widened (a schema may gain fields) to hold every leaf: its
    files are rewritten with the new columns, so that every file of a table has one schema."""
    entry = w.new.fragments.get(batch.dataset_id)
    if entry is None:
        # The first batch names the kind (the embedded store's fragment_tables: ON CONFLICT DO NOTHING).
        entry = {
            "kind": batch.kind,
            "table": fragment_table_for(batch.dataset_id),
            "columns": [list(c) for c in q.fragment_columns(batch.kind)],
        }
        w.new.fragments[batch.dataset_id] = entry
        w.new.tables.setdefault(entry["table"], [])
        w.changed = True
    table = str(entry["table"])
    columns = [(str(c), str(ty)) for c, ty in entry["columns"]]
    have = {c for c, _ in columns}
    added = [(name, sql_type) for name, sql_type, _ in batch.leaves if name not in have and name != MEMBERSHIP_LEAF]
    if added:
        if w.files(table):
            w.put(table, q.widened_sql(w.rel(table, columns), columns, added))
        columns += added
        entry["columns"] = [list(c) for c in columns]
    return table, columns


def remove_dataset(w: Work, dataset_id: str) -> None:
    """Drops the dataset's fragment table and its records' memberships (nothing when the version has neither)."""
    entry = w.new.fragments.pop(dataset_id, None)
    if entry is None:
        return
    w.changed = True
    w.drop(entry["table"])
    members = w.rel(q.FRAGMENT_MEMBERSHIPS, q.FRAGMENT_MEMBERSHIP_COLUMNS)
    if w.files(q.FRAGMENT_MEMBERSHIPS) and w.query(
        f"SELECT count(*) FROM {members} x WHERE dataset_id = {lit(dataset_id)}"
    ):
        w.put(q.FRAGMENT_MEMBERSHIPS, f"SELECT * FROM {members} x WHERE dataset_id <> {lit(dataset_id)}")


def stitch(w: Work, rec: Path, result: FragmentResult) -> Path:
    """Resolves every record to one profile (the embedded store's ``graph.stitch``): identities in a record link;
    each connected component of records, identities and the profiles those belong to is one profile, the
    smallest existing profile id of it or a new one, and the other profiles of it merge into that one. Adds the
    new identities; answers the records' profiles (r, profile_id, new)."""
    identities = w.rel(q.IDENTITIES, q.IDENTITY_COLUMNS)
    rid, _ = w.temp("frid", q.record_ids_sql(rec))
    if not w.query(q.record_tangled_sql(rid, identities)):
        # No record links two profiles and no identity is in two records: the usual case, no walk.
        rec_profile, _ = w.temp("rec_profile", q.untangled_sql(rec, rid, identities))
        result.profilesCreated = w.query(f"SELECT count(*) FROM read_parquet({path_list([rec_profile])}) p WHERE new")
    else:
        nodes, _ = w.temp("rid", q.record_nodes_sql(rid))
        labels = components(w, nodes, identities)
        comp, _ = w.temp("comp", q.components_sql(labels))
        created, merged = w.session.query(q.component_counts_sql(comp))[0]
        result.profilesCreated, result.profilesMerged = int(created or 0), int(merged or 0)
        rec_profile, _ = w.temp("rec_profile", q.record_profiles_sql(labels, comp))
        if result.profilesMerged:
            remap(w, labels)
    added, result.identitiesAdded = w.append(q.IDENTITIES, q.record_new_identities_sql(rid, rec_profile, identities))
    if added is not None:
        w.add_by_profile(added)
    return rec_profile


def link(w: Work, rows: AudienceRows, resolved: Path) -> None:
    """Identities in one row link: a row whose identities belonged to two profiles merges them (in every table
    that holds profile ids), as :func:`stitch` does for records."""
    rid, _ = w.temp("rid", q.rid_sql(rows, resolved))
    identities = w.rel(q.IDENTITIES, q.IDENTITY_COLUMNS)
    if not w.query(q.tangled_sql(rid, identities)):
        return  # every row's identities are one profile's already
    remap(w, components(w, rid, identities))


def components(w: Work, rid: Path, identities: str) -> Path:
    """Labels (node → its component's smallest node) of the graph where a row (``rid``: row node, ns, id) links
    its identities and a known identity its profile: label propagation until nothing changes."""
    edges, _ = w.temp("edges", q.edges_sql(rid, identities))
    labels, _ = w.temp("labels0", q.labels_sql(edges))
    step = 0
    while True:
        step += 1
        after, _ = w.temp(f"labels{step}", q.propagate_sql(labels, edges))
        changed = w.query(q.changed_sql(labels, after))
        labels = after
        if not changed:
            return labels


def remap(w: Work, labels: Path) -> None:
    """Moves everything of the profiles a component merged to its smallest profile id, in every table that holds
    profile ids (the embedded store's ``graph._merge_profiles``): identities, memberships (a member under two of
    them keeps its newest row), fragments, records' memberships and segment results (one row per profile, the
    newest status per segment)."""
    moves, moved = w.temp("remap", q.remap_sql(labels))
    if not moved:
        return
    rem = f"read_parquet({path_list([moves])})"

    def touched(rel: str, key: str = PROFILE_ID) -> bool:
        """Whether the table holds a profile that moves."""
        return bool(w.query(f"SELECT count(*) FROM {rel} x JOIN {rem} r ON r.old = x.{key}"))

    identities = w.rel(q.IDENTITIES, q.IDENTITY_COLUMNS)
    w.put(q.IDENTITIES, q.remapped_identities_sql(identities, moves, by_profile=False))
    w.put(q.IDENTITIES_BY_PROFILE, q.remapped_identities_sql(identities, moves, by_profile=True))
    for _, aud in w.new.members():
        columns = [(str(c), str(ty)) for c, ty in aud["columns"]]
        members = w.rel(aud["table"], columns)
        if touched(members):
            w.put(aud["table"], q.remapped_members_sql(members, [c for c, _ in columns], moves))
    keyed = [(f["table"], PROFILE_ID) for f in w.new.fragments.values() if f["kind"] != "entity"]
    for table, key in [*keyed, (q.FRAGMENT_MEMBERSHIPS, "profile_id")]:
        if not w.files(table):
            continue
        columns = w.new.columns(table)
        rel = w.rel(table, columns)
        if touched(rel, ident(key)):
            w.put(table, q.remapped_sql(rel, [c for c, _ in columns], key, moves))
    # Segment results: the next evaluation reads each segment's past from them (``lake_segments``).
    widths = {
        str(a["segment"]["table"]): int(a["segment"]["width"]) for a in w.new.audiences.values() if "segment" in a
    }
    for table, width in widths.items():
        if not w.files(table):
            continue
        rel = w.rel(table, [(PROFILE_ID, "VARCHAR"), *((f"c{k}", "INTEGER") for k in range(width))])
        if touched(rel):
            w.put(table, q.remapped_results_sql(rel, width, moves))
