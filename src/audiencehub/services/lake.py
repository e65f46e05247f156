"""Where datasets, staging areas and run artefacts live (see docs/architecture.md, storage layout).

lake/{org}/{sandbox}/{datasetId}/{batchId}/part-*.parquet    committed batches
lake/{org}/{sandbox}/_staging/{runId}/...                     a run's work in progress
lake/{org}/{sandbox}/_runs/{runId}/errors.csv                 a run's rejected rows
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from audiencehub.metadata.store import Scope


class Lake:
    def __init__(self, root: Path) -> None:
        self.root = root

    def sandbox(self, scope: Scope) -> Path:
        return self.root / scope.org_id / scope.sandbox

    def dataset(self, scope: Scope, dataset_id: str) -> Path:
        return self.sandbox(scope) / dataset_id

    def batch(self, scope: Scope, dataset_id: str, batch_id: str) -> Path:
        return self.dataset(scope, dataset_id) / batch_id

    def staging(self, scope: Scope, run_id: str) -> Path:
        return self.sandbox(scope) / "_staging" / run_id

    def run_dir(self, scope: Scope, run_id: str) -> Path:
        return self.sandbox(scope) / "_runs" / run_id

    def errors_file(self, scope: Scope, run_id: str) -> Path:
        return self.run_dir(scope, run_id) / "errors.csv"

    def publish(self, staged: Path, final: Path) -> None:
        """Moves a staged folder into place; a second call after a crash finds it done."""
        if final.exists():
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)

    @staticmethod
    def remove(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
