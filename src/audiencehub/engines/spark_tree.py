"""What the Spark SQL rewrites (``engines/spark_sql.py``, ``spark_json.py``, ``spark_lists.py``) share: the error they
raise and two ways to rewrite a sqlglot tree."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import sqlglot
from sqlglot import exp


class UnsupportedSql(ValueError):
    """The statement uses DuckDB SQL that has no faithful Spark translation (the message says which)."""


def bottom_up(tree: exp.Expression, swap: Callable[[exp.Expression], exp.Expression]) -> exp.Expression:
    """``swap`` applied to every node, children before their parent (a parent's copy then holds rewritten
    children); returns the new root."""
    root = tree
    for node in reversed(list(tree.dfs())):
        new = swap(cast(exp.Expression, node))
        if new is not node:
            if node is root:
                root = new
            else:
                node.replace(new)
    return root


def substitute(template: str, **values: exp.Expression) -> exp.Expression:
    """``template`` (Spark SQL) with each column ``__name`` replaced by a copy of ``values[name]``."""
    tree = sqlglot.parse_one(template, read="spark")

    def put(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name.startswith("__"):
            return values[node.name[2:]].copy()
        return node

    return tree.transform(put)
