"""The ``backend`` fixture: every kind of base connection over its real server, one fresh root each."""

from __future__ import annotations

import pytest

from tests.servers.gcs import GcsEmulator
from tests.servers.s3 import MotoServer
from tests.servers.sftp import SftpServer
from tests.sources.backends import KINDS, Backend, make_backend


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return backend_of(request, request.param)


def backend_of(request: pytest.FixtureRequest, kind: str) -> Backend:
    """The backend ``kind`` on a fresh bucket or folder of its session-wide server."""
    if kind in ("s3", "gcs_hmac"):
        moto: MotoServer = request.getfixturevalue("moto_server")
        return make_backend(kind, moto=moto, bucket=moto.make_bucket())
    if kind == "gcs_json":
        gcs: GcsEmulator = request.getfixturevalue("gcs_emulator")
        return make_backend(kind, gcs=gcs, bucket=gcs.make_bucket())
    sftp: SftpServer = request.getfixturevalue("sftp_server")
    return make_backend(kind, sftp=sftp, sftp_folder=sftp.make_folder())
