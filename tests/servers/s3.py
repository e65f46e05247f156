"""A moto S3 server in a subprocess, with IAM authentication enforced.

moto checks credentials only when ``INITIAL_NO_AUTH_ACTION_COUNT`` is set: that many requests go through
unchecked, every later one is authenticated. The server starts with the count at 3 and spends those three
requests on creating an IAM user, its access key, and an inline policy allowing ``s3:*``.

What moto (5.2) then checks on each request, found by experiment and in ``moto/iam/access_control.py``:

* the access key id must exist: unknown ids get ``InvalidAccessKeyId`` (403);
* the SigV4 signature is recomputed with the key's secret: a wrong secret gets ``SignatureDoesNotMatch`` (403);
* the key's IAM policies must allow the action: a user without a policy gets ``AccessDenied`` (403).

It does not check: the region in the credential scope (the signature is recomputed with the region the client
signed with, so any region passes), the request time (a signature dated 2020 is accepted), or the body against
``x-amz-content-sha256`` (a PUT whose body differs from the signed hash is stored).
Requests without an ``Authorization`` header are not handled cleanly: an anonymous GET of an object gets a 403
with an empty body, an anonymous list or ListBuckets a 500, and presigned URLs (query-string auth, SigV2 or SigV4)
and SigV2-signed requests a ``500 Internal Server Error`` (a KeyError on the missing header inside moto).
``GET /moto-api/`` is not counted and serves as the readiness probe.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

from tests.servers._process import LOOPBACK, ServerProcess, clean_env, http_ok

_S3_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
_NO_RETRIES = Config(retries={"total_max_attempts": 1})


def isolated_session() -> boto3.session.Session:
    """A boto3 session that reads no ~/.aws config or credentials file."""
    core = botocore.session.Session()
    core.set_config_variable("config_file", os.devnull)
    core.set_config_variable("credentials_file", os.devnull)
    return boto3.session.Session(botocore_session=core)


class MotoServer:
    """moto's S3 server on 127.0.0.1, requiring requests signed with :attr:`access_key`/:attr:`secret_key`."""

    region = "us-east-1"
    user = "audiencehub-test"

    def __init__(self) -> None:
        env = clean_env(
            INITIAL_NO_AUTH_ACTION_COUNT="3",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        self._process, self.port = ServerProcess.launch(
            "moto",
            lambda port: [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
            lambda port: http_ok(f"http://{LOOPBACK}:{port}/moto-api/"),
            env=env,
        )
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        try:
            self.access_key, self.secret_key = self._create_user()
            self._client = self.client()
            self._client.list_buckets()  # the key works, now that auth is enforced
        except BaseException:
            self.stop()
            raise

    def _create_user(self) -> tuple[str, str]:
        """Spends exactly the three unauthenticated requests (no retries, which would spend more)."""
        iam = isolated_session().client(
            "iam",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
            config=_NO_RETRIES,
        )
        iam.create_user(UserName=self.user)
        key = iam.create_access_key(UserName=self.user)["AccessKey"]
        iam.put_user_policy(UserName=self.user, PolicyName="s3-all", PolicyDocument=json.dumps(_S3_ALL))
        return key["AccessKeyId"], key["SecretAccessKey"]

    def client(
        self,
        *,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        config: Config | None = None,
    ) -> Any:
        """A boto3 S3 client with the valid credentials (or the ones given), on this server or ``endpoint_url``."""
        return isolated_session().client(
            "s3",
            endpoint_url=endpoint_url or self.endpoint,
            region_name=self.region,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=config,
        )

    def make_bucket(self, name: str | None = None) -> str:
        """Creates a bucket (a unique name when none is given) and returns its name."""
        name = name or f"test-{uuid.uuid4().hex[:16]}"
        self._client.create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=bucket, Key=key, Body=data)

    def stop(self) -> None:
        self._process.stop()

    def log(self) -> str:
        """The end of the server's output, for failure messages."""
        return self._process.log()
