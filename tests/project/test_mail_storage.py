"""MAIL_STORAGE_BACKEND: the mail store on a folder (default) or an S3-compatible bucket,
chosen by the environment alone. Settings are read in a fresh process, as a deployment does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Prints what the configured default storage is, without touching the network: building a
# boto3 client only reads its configuration.
PROBE = """
import json, django
django.setup()
from django.core.files.storage import storages
s = storages["default"]
out = {"class": type(s).__module__ + "." + type(s).__name__}
if hasattr(s, "bucket_name"):
    client = s.connection.meta.client
    creds = client._request_signer._credentials
    out.update(
        bucket=s.bucket_name,
        endpoint=client.meta.endpoint_url,
        region=client.meta.region_name,
        access_key=creds.access_key,
        secret_matches=creds.secret_key == "s3-secret-for-tests",
        default_acl=s.default_acl,
        file_overwrite=s.file_overwrite,
    )
else:
    out["location"] = str(s.location)
print(json.dumps(out))
"""

S3_ENVIRONMENT = {
    "MAIL_STORAGE_BACKEND": "s3",
    "AWS_STORAGE_BUCKET_NAME": "recruitmail-mail",
    "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
    "AWS_S3_REGION_NAME": "ap-northeast-1",
    "AWS_ACCESS_KEY_ID": "s3-access-for-tests",
    "AWS_SECRET_ACCESS_KEY": "s3-secret-for-tests",
}


def _settings_process(code: str, **variables: str) -> subprocess.CompletedProcess[str]:
    # Only what a deployment would have: none of the storage variables this machine may hold.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") and key not in ("MAIL_STORAGE_BACKEND", "DEBUG")
    }
    env.update(DJANGO_SETTINGS_MODULE="recruitmail.settings", DEBUG="true", **variables)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_mail_store_is_a_folder_by_default(tmp_path: Path) -> None:
    result = _settings_process(PROBE, MAIL_STORE_DIR=str(tmp_path / "store"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "class": "django.core.files.storage.filesystem.FileSystemStorage",
        "location": str(tmp_path / "store"),
    }


def test_s3_variables_give_the_s3_backend() -> None:
    result = _settings_process(PROBE, **S3_ENVIRONMENT)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "class": "storages.backends.s3.S3Storage",
        "bucket": "recruitmail-mail",
        "endpoint": "http://127.0.0.1:9000",
        "region": "ap-northeast-1",
        "access_key": "s3-access-for-tests",
        "secret_matches": True,
        "default_acl": None,
        "file_overwrite": True,
    }


def test_s3_without_a_bucket_stops_the_start_naming_the_variable() -> None:
    environment = {**S3_ENVIRONMENT, "AWS_STORAGE_BUCKET_NAME": ""}
    result = _settings_process("import django; django.setup()", **environment)
    assert result.returncode != 0
    assert "AWS_STORAGE_BUCKET_NAME" in result.stderr


def test_an_unknown_backend_stops_the_start_naming_the_variable() -> None:
    result = _settings_process("import django; django.setup()", MAIL_STORAGE_BACKEND="ftp")
    assert result.returncode != 0
    assert "MAIL_STORAGE_BACKEND must be filesystem or s3" in result.stderr
