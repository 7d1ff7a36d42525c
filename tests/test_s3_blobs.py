"""The S3 blob store against an S3-compatible server on loopback.

The server is moto's (`moto[server]`, a test extra): an emulator of the S3 API, run here as its
own process on 127.0.0.1 speaking HTTP, with IAM authentication switched on, so requests are
really signed and checked, and wrong credentials are really refused. It is not AWS, MinIO or
Ceph: it does not check upload checksums, for one, so that refusal path is not exercised here.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from storage.blobs import BlobStore, BlobStoreError, ContentStore, open_blobs

if os.environ.get("CI"):
    import boto3  # noqa: F401  - CI installs the test extra; a missing server must fail there
    import moto  # noqa: F401
else:
    pytest.importorskip("boto3")
    pytest.importorskip("moto", reason="the S3 tests need moto[server] (the test extra)")
import boto3  # noqa: E402

from storage.s3blobs import S3BlobStore, parse_s3_location  # noqa: E402

BUCKET = "deepwatch-media"
# Requests the server lets through unauthenticated while the test sets it up: create the IAM
# user, its access key, its policy, and the bucket. Everything after must be properly signed.
SETUP_REQUESTS = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoopbackS3:
    """moto's S3 server in a child process on 127.0.0.1, with one bucket and one IAM user."""

    def __init__(self, workdir: Path):
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(SETUP_REQUESTS))
        self.log = (workdir / "moto.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir,
        )
        self._wait_until_listening(deadline_s=60)
        setup = dict(endpoint_url=self.endpoint, region_name="us-east-1",
                     aws_access_key_id="setup", aws_secret_access_key="setup")
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="deepwatch")
        key = iam.create_access_key(UserName="deepwatch")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="deepwatch", PolicyName="blobs", PolicyDocument=json.dumps(policy))
        boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]

    def _wait_until_listening(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.process.returncode}; see {self.log.name}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto server did not listen on {self.endpoint} within {deadline_s} s")

    def client(self):
        """A correctly authenticated client, for looking behind the store's back."""
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    server = LoopbackS3(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    """The server, with this process's AWS credential chain pointed at its IAM user only."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # Nothing from the machine's own AWS setup may leak in, and no instance-metadata probing.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "DEEPWATCH_S3_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    return s3_server


def location(s3: LoopbackS3, prefix: str | None = None) -> str:
    """A fresh prefix per test, so tests never see each other's objects."""
    return f"s3://{BUCKET}/{prefix or 'run-' + uuid.uuid4().hex[:8]}?endpoint={s3.endpoint}"


def keys_under(s3: LoopbackS3, prefix: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


# -- the contract -----------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_put_get_exists_verify_round_trip(s3):
    blobs = open_blobs(location(s3, "roundtrip"))
    assert isinstance(blobs, S3BlobStore) and isinstance(blobs, ContentStore)
    assert not hasattr(blobs, "path")  # local-only: callers that need a file must use get()
    data = "선거 deepfake evidence".encode()
    sha = hashlib.sha256(data).hexdigest()
    assert not blobs.exists(sha)

    assert blobs.put(data) == sha
    assert blobs.exists(sha) and blobs.get(sha) == data and blobs.verify(sha)
    # The key fans out like the local store, and the object carries its own name.
    assert keys_under(s3, "roundtrip") == [f"roundtrip/{sha[:2]}/{sha[2:4]}/{sha}"]
    head = s3.client().head_object(Bucket=BUCKET, Key=f"roundtrip/{sha[:2]}/{sha[2:4]}/{sha}")
    assert head["Metadata"] == {"sha256": sha} and head["ContentLength"] == len(data)


@pytest.mark.timeout(60)
def test_put_is_idempotent(s3):
    blobs = open_blobs(location(s3, "idempotent"))
    first = blobs.put(b"same bytes")
    etag = s3.client().head_object(Bucket=BUCKET, Key=blobs.key(first))["ETag"]
    again = open_blobs(location(s3, "idempotent"))  # a second node with the same store
    assert again.put(b"same bytes") == first and blobs.put(bytearray(b"same bytes")) == first
    assert keys_under(s3, "idempotent") == [blobs.key(first)]
    assert s3.client().head_object(Bucket=BUCKET, Key=blobs.key(first))["ETag"] == etag
    assert again.get(first) == b"same bytes"


@pytest.mark.timeout(60)
def test_missing_blob_is_a_key_error_naming_it(s3):
    blobs = open_blobs(location(s3, "missing"))
    absent = "ab" * 32
    assert not blobs.exists(absent)
    with pytest.raises(KeyError, match=f"blob {absent} is not in the store at s3://{BUCKET}/missing"):
        blobs.get(absent)
    with pytest.raises(KeyError, match=absent):
        blobs.verify(absent)  # evidence/verify.py reports a KeyError as "blob ... is missing"
    with pytest.raises(ValueError, match="not a sha256"):
        blobs.get("../../etc/passwd")


@pytest.mark.timeout(60)
def test_an_object_rewritten_behind_the_store_fails_verify(s3):
    blobs = open_blobs(location(s3, "tamper"))
    sha = blobs.put(b"original screenshot bytes")
    other = blobs.put(b"an untouched neighbour")
    s3.client().put_object(Bucket=BUCKET, Key=blobs.key(sha), Body=b"edited screenshot bytes")
    assert blobs.exists(sha) and blobs.get(sha) == b"edited screenshot bytes"
    assert blobs.verify(sha) is False
    assert blobs.verify(other) is True


@pytest.mark.timeout(120)
def test_twenty_megabyte_object_round_trips(s3):
    blobs = open_blobs(location(s3, "large"))
    data = os.urandom(20 * 1024 * 1024)
    sha = blobs.put(data)
    assert s3.client().head_object(Bucket=BUCKET, Key=blobs.key(sha))["ContentLength"] == len(data)
    assert blobs.get(sha) == data and blobs.verify(sha)


@pytest.mark.timeout(60)
def test_a_store_pickles_to_another_worker(s3):
    blobs = open_blobs(location(s3, "pickled"))
    sha = blobs.put(b"sent to a Ray actor")
    copy = pickle.loads(pickle.dumps(blobs))
    assert copy is not blobs and copy.location == blobs.location and copy.get(sha) == b"sent to a Ray actor"


# -- configuration and failures ----------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_endpoint_from_the_environment_and_local_paths_unchanged(s3, monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPWATCH_S3_ENDPOINT", s3.endpoint)
    blobs = open_blobs(f"s3://{BUCKET}/from-env/")
    assert isinstance(blobs, S3BlobStore) and blobs.endpoint == s3.endpoint and blobs.location == f"s3://{BUCKET}/from-env"
    assert blobs.get(blobs.put(b"via env")) == b"via env"

    local = open_blobs(str(tmp_path / "local"))
    assert type(local) is BlobStore and local.root == (tmp_path / "local").resolve()
    assert local.path(local.put(b"on disk")).read_bytes() == b"on disk"


def test_bad_locations_are_refused_by_name():
    with pytest.raises(ValueError, match="'Bad_Bucket' is not a valid S3 bucket name"):
        parse_s3_location("s3://Bad_Bucket/x")
    with pytest.raises(ValueError, match="unknown option.*region"):
        open_blobs("s3://media/x?region=eu-west-1")
    with pytest.raises(ValueError, match="unknown scheme 'gs'"):
        open_blobs("gs://media/x")
    with pytest.raises(ValueError, match="must be an http:// or https:// URL"):
        open_blobs("s3://media/x?endpoint=ftp://127.0.0.1:21")
    assert parse_s3_location("s3://media/a/b/?endpoint=http://127.0.0.1:9000") == ("media", "a/b", "http://127.0.0.1:9000")


@pytest.mark.timeout(60)
def test_wrong_credentials_name_the_endpoint(s3, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(BlobStoreError, match=f"S3 endpoint {s3.endpoint} refused to open s3://{BUCKET}/run-.*check the credentials"):
        open_blobs(location(s3))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
    with pytest.raises(BlobStoreError, match=f"S3 endpoint {s3.endpoint} refused"):
        open_blobs(location(s3))
    # A store opened without the up-front check fails the same way on first use.
    lazy = S3BlobStore(BUCKET, "lazy", endpoint_url=s3.endpoint, check=False)
    with pytest.raises(BlobStoreError, match=f"{s3.endpoint} refused to look up blob [0-9a-f]{{64}} in s3://{BUCKET}/lazy"):
        lazy.put(b"never stored")
    with pytest.raises(BlobStoreError, match=f"{s3.endpoint} refused to read blob {'ab' * 32} in s3://{BUCKET}/lazy \\(InvalidAccessKeyId"):
        lazy.get("ab" * 32)  # refused, not "missing": a KeyError here would hide the real fault


@pytest.mark.timeout(60)
def test_no_credentials_and_missing_bucket_are_clear(s3, monkeypatch):
    with pytest.raises(BlobStoreError, match=f"bucket 'no-such-bucket' does not exist at {s3.endpoint}"):
        open_blobs(f"s3://no-such-bucket/x?endpoint={s3.endpoint}")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(BlobStoreError, match=f"no AWS credentials for s3://{BUCKET}/x at {s3.endpoint}"):
        open_blobs(f"s3://{BUCKET}/x?endpoint={s3.endpoint}")


@pytest.mark.timeout(60)
def test_unreachable_endpoint_fails_fast_naming_it(s3):
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(BlobStoreError, match=f"cannot reach the S3 endpoint {dead}"):
        open_blobs(f"s3://{BUCKET}/x?endpoint={dead}")
    assert time.monotonic() - started < 30


# -- the real stages, writing into and reading from the bucket ----------------------------------------
@pytest.mark.timeout(180)
def test_fetch_stage_writes_media_to_s3_and_detect_stage_reads_it_back(s3):
    pytest.importorskip("c2pa")
    pytest.importorskip("imwatermark")
    from agents.base import MediaRef
    from orchestrator.stages import DetectStage, FetchPolicySpec, FetchStage, MediaRecord
    from tests.fakeplatform import FakePlatform
    from tests.test_c2pa import plain_jpeg, sign_jpeg

    where = location(s3, "campaign")
    ai_jpeg = sign_jpeg(plain_jpeg(5))  # a real C2PA manifest declaring a trained-model origin
    with FakePlatform() as fake:
        fake.media["generated.jpg"] = (ai_jpeg, "image/jpeg")
        fetch = FetchStage(FetchPolicySpec(allow_networks=("127.0.0.0/8",), timeout_s=5), where)
        records = fetch.run([MediaRef(f"{fake.base_url}/media/rally.png", "image"),
                             MediaRef(f"{fake.base_url}/media/generated.jpg", "image"),
                             MediaRef(f"{fake.base_url}/media/clip.mp4", "video")])
        fetch.close()
    assert all(isinstance(r, MediaRecord) for r in records), records
    png, generated, clip = records
    assert generated.sha256 == hashlib.sha256(ai_jpeg).hexdigest()
    assert keys_under(s3, "campaign") == sorted(f"campaign/{r.sha256[:2]}/{r.sha256[2:4]}/{r.sha256}" for r in records)

    # Another worker, sharing nothing with the first but the location string.
    detect = DetectStage({"classifier_model": None}, where)
    analyses = detect.run([(r.sha256, r.kind, r.mime) for r in records])
    assert [a.sha256 for a in analyses] == [png.sha256, generated.sha256, clip.sha256]
    assert analyses[1].verdict.band == "likely_fake"  # signed, but by a certificate on no trust list
    assert analyses[0].verdict.band not in ("confirmed_ai", "likely_fake") and analyses[2].detections
    with pytest.raises(KeyError, match="is not in the store at s3://"):
        detect.run([("cd" * 32, "image", "image/png")])
