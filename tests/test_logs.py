"""Credentials never reach a log: the redaction filter on crafted records, and a real ingest against the
local S3 endpoint at DEBUG (botocore then logs every request's headers) whose stderr holds no key id or secret."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from insarcloud.logs import (
    REDACTED,
    RedactingFilter,
    configure_logging,
    install_redaction,
    redact,
    resolve_level,
    setup_worker_logging,
)

KEY_ID = "AKIAINSARCLOUDTEST42"  # moto accepts any key; this one is recognisable in any output
ODD_KEY_ID = "insarcloud-odd-key-id-4711"  # not AKIA-shaped: must go through the header patterns
SECRET = "s3cr3t/InsarcloudTestSecretValue+0123456789"
TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKENinsarcloud0123456789abcdef=="
SIGNATURE = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"

REPO = Path(__file__).resolve().parents[1]


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("botocore.endpoint", logging.DEBUG, __file__, 1, msg, args or None, exc_info)


def _filtered(record: logging.LogRecord) -> str:
    assert RedactingFilter().filter(record) is True
    return logging.Formatter("%(message)s").format(record)


@pytest.mark.parametrize("text", [
    # botocore's "Sending http request" repr: bytes header values in a dict
    f"<AWSPreparedRequest method=PUT, url=http://127.0.0.1:5000/b/k, headers={{'X-Amz-Date': b'20261206T195500Z', "
    f"'X-Amz-Security-Token': b'{TOKEN}', 'Authorization': b'AWS4-HMAC-SHA256 Credential={ODD_KEY_ID}/20261206/"
    f"us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature={SIGNATURE}'}}>",
    # a raw header block and botocore.auth's canonical request / signature lines
    f"Authorization: AWS4-HMAC-SHA256 Credential={ODD_KEY_ID}/20261206/us-east-1/s3/aws4_request\n"
    f"x-amz-security-token:{TOKEN}\nSignature:\n{SIGNATURE}",
    # presigned URLs, V4 and V2
    f"GET https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={ODD_KEY_ID}%2F20261206"
    f"%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Security-Token={TOKEN}&X-Amz-Signature={SIGNATURE}",
    f"https://b.s3.amazonaws.com/k?AWSAccessKeyId={ODD_KEY_ID}&Signature={SIGNATURE}&Expires=1",
    # storage options and settings as dicts and key=value text
    f"storage_options={{'key': '{ODD_KEY_ID}', 'secret': '{SECRET}', 'token': '{TOKEN}', 'anon': False}}",
    f"aws_access_key_id={ODD_KEY_ID} aws_secret_access_key={SECRET} aws_session_token={TOKEN}",
    f'{{"access_key_id": "{ODD_KEY_ID}", "secret_access_key": "{SECRET}", "password": "{SECRET}"}}',
])
def test_filter_redacts_credentials_in_crafted_messages(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)  # the patterns alone must do it
    out = _filtered(_record(text))
    for secret in (ODD_KEY_ID, SECRET, TOKEN, SIGNATURE):
        assert secret not in out
    assert REDACTED in out
    # as an argument of a %-format, and inside a traceback
    assert ODD_KEY_ID not in _filtered(_record("request: %s", text))
    try:
        raise RuntimeError(text)
    except RuntimeError as exc:
        rec = _record("failed", exc=exc)
    out = _filtered(rec)
    assert "RuntimeError" in out and ODD_KEY_ID not in out and SIGNATURE not in out


def test_filter_keeps_ordinary_text_and_object_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    text = ("Making request for OperationModel(name=PutObject) with params: {'Bucket': 'b', "
            "'Key': 'cubes/106A_09048_000909.zarr/zarr.json', 'ContinuationToken': 'abc'}; 12 pairs written")
    assert redact(text) == text


def test_environment_credentials_are_removed_verbatim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ODD_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    out = _filtered(_record("odd places: %s and %r", ODD_KEY_ID.upper().lower(), [SECRET]))
    assert ODD_KEY_ID not in out and SECRET not in out and out.count(REDACTED) == 2
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "short")  # too short to replace verbatim: ordinary words stay
    assert redact("a short story") == "a short story"


def test_levels_and_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_level(0, None) == logging.WARNING
    assert resolve_level(0, "debug") == logging.DEBUG
    assert resolve_level(1, "DEBUG") == logging.INFO  # -v wins over the environment
    assert resolve_level(5, None) == logging.DEBUG
    assert resolve_level(0, "chatty") == logging.WARNING
    root = logging.getLogger()
    saved = (root.level, {n: logging.getLogger(n).level for n in ("distributed", "botocore")})
    handler = logging.StreamHandler()
    other = logging.getLogger("insarcloud.test_logs")
    other.addHandler(handler)
    try:
        configure_logging(0, None)
        assert logging.getLogger("botocore").level == logging.WARNING
        assert logging.getLogger("distributed").level == logging.WARNING
        configure_logging(1, None)
        assert logging.getLogger("distributed").level == logging.INFO
        assert logging.getLogger("botocore").level == logging.WARNING
        configure_logging(0, "DEBUG")
        assert root.level == logging.DEBUG and logging.getLogger("botocore").level == logging.DEBUG
        # every handler there is gets the filter, once (pytest's own included)
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
        assert all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in root.handlers)
        install_redaction()
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    finally:
        other.removeHandler(handler)
        root.setLevel(saved[0])
        for n, lvl in saved[1].items():
            logging.getLogger(n).setLevel(lvl)


def test_dask_workers_get_the_filter(dask_client) -> None:  # type: ignore[no-untyped-def]
    from insarcloud.logs import worker_plugin

    dask_client.register_plugin(worker_plugin())

    def probe() -> tuple[bool, int]:
        handlers = [logging.lastResort, *logging.getLogger("distributed").handlers]
        ok = all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in handlers if h is not None)
        return ok, logging.getLogger("botocore").level

    got = dask_client.run(probe)
    assert got and all(ok and level == logging.WARNING for ok, level in got.values()), got


def test_worker_setup_hook_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSARCLOUD_LOG_LEVEL", "DEBUG")
    saved = logging.getLogger("botocore").level
    try:
        setup_worker_logging()
        assert logging.getLogger("botocore").level == logging.DEBUG
        assert any(isinstance(f, RedactingFilter) for f in logging.lastResort.filters)
    finally:
        logging.getLogger("botocore").setLevel(saved)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # two CLI processes; 136 s at load average ~20
def test_real_ingest_at_debug_logs_no_credentials(licsar_frame_dir: Path, bucket: str,
                                                    s3_endpoint: str, dask_client) -> None:  # type: ignore[no-untyped-def]
    """``insarcloud ingest`` then ``insarcloud info`` in their own processes, on the local S3 endpoint with a
    recognisable key id, at DEBUG (ingest through ``$INSARCLOUD_LOG_LEVEL``, info through ``-vv``): botocore
    logs the signed headers of every request (the test checks that they were logged), and neither the key id
    nor the secret appears anywhere in stdout or stderr."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_ENDPOINT_URL=s3_endpoint,
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    cli = [sys.executable, "-m", "insarcloud.cli"]
    cube = f"{bucket}/cubes/106A_09048_000909.zarr"
    scheduler = dask_client.scheduler.address  # the session's workers (no new cluster per test)
    out = ""
    for cmd, extra_env in (
        (["ingest", str(licsar_frame_dir), "--frame", "106A_09048_000909", "--cube", cube, "--chunk", "128",
          "--scheduler", scheduler], {"INSARCLOUD_LOG_LEVEL": "DEBUG"}),
        (["-vv", "info", cube], {}),
    ):
        proc = subprocess.run([*cli, *cmd], env={**env, **extra_env}, capture_output=True, text=True, timeout=540,
                              cwd=REPO)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        out += proc.stdout + proc.stderr
    assert "pairs written" in out and "106A_09048_000909" in out
    # the requests really were logged with their headers (else the test would prove nothing) ...
    assert "DEBUG botocore.endpoint: Sending http request" in out
    assert f"'Authorization': b'{REDACTED}'" in out
    # ... and no credential survived, in any form
    assert KEY_ID not in out and SECRET not in out
    assert "InsarcloudTestSecretValue" not in out and "AKIA" not in out
