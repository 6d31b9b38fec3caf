"""Logging set-up for the command line, Dask workers and Ray workers: levels, and credentials never logged.

botocore logs every request at DEBUG, headers included: ``Authorization: AWS4-HMAC-SHA256
Credential=<ACCESS_KEY_ID>/<date>/<region>/s3/aws4_request, ..., Signature=...``, the canonical request
(``x-amz-security-token:<SESSION_TOKEN>``) and, for presigned URLs, ``X-Amz-Credential``/``X-Amz-Signature``
query parameters. s3fs and our own code may show ``storage_options`` dicts (``'key'``, ``'secret'``,
``'token'``). :class:`RedactingFilter` rewrites every record that reaches a handler (message, arguments and
traceback text) before it is formatted, so no level and no logger can print them; the values of the
standard AWS credential variables are also removed verbatim wherever they appear.

Levels: the command line's ``-v`` count, else ``$INSARCLOUD_LOG_LEVEL`` (set by the helm chart). The chatty
third-party loggers stay at WARNING unless asked: ``-v`` lets ``distributed`` speak at INFO, ``-vv`` (or
``INSARCLOUD_LOG_LEVEL=DEBUG``) turns DEBUG on everywhere, still redacted.
"""

from __future__ import annotations

import logging
import os
import re
import sys

REDACTED = "[REDACTED]"
ENV_LEVEL = "INSARCLOUD_LOG_LEVEL"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Loggers kept at WARNING unless -v/-vv asks for more (distributed gets INFO with -v).
NOISY_LOGGERS = ("distributed", "bokeh", "tornado", "botocore", "aiobotocore", "s3fs", "urllib3", "ray", "fsspec",
                 "asyncio")

# Environment variables whose values are secrets (or identify one): removed verbatim from every record.
SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
# Shorter values are too likely to be ordinary words ("testing") to replace verbatim; the patterns still apply.
_MIN_LITERAL = 8

_Q = r"""['"]?"""  # an optional quote around a dict key
_V = r"""\s*[:=]\s*b?['"]?"""  # separator and the opening of a (bytes) string value
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # the whole header value: "Authorization: AWS4-HMAC-SHA256 Credential=..., Signature=..." or 'Authorization': b'...'
    (re.compile(rf"(?i)(authorization{_Q}{_V})[^'\"\r\n]*"), rf"\g<1>{REDACTED}"),
    # SigV4 credential scope, header or presigned query (X-Amz-Credential=AKIA...%2F20240101%2F...)
    (re.compile(r"(?i)((?:x-amz-)?credential=)[^/\s,&'\"%]+"), rf"\g<1>{REDACTED}"),
    # session tokens and signatures, as headers, dict items, query parameters or botocore's "Signature:\n<hex>"
    (re.compile(rf"(?i)((?:x-amz-)?(?:security-token|signature){_Q}\s*[:=]\s*\n?\s*b?['\"]?)[^'\"\s&,}}]+"),
     rf"\g<1>{REDACTED}"),
    # presigned V2 URLs
    (re.compile(r"(?i)((?:AWSAccessKeyId|Signature)=)[^&\s'\"]+"), rf"\g<1>{REDACTED}"),
    # named secrets: aws_secret_access_key=..., "secret": "...", token: ..., password=...
    (re.compile(rf"(?i)(?<![A-Za-z0-9])((?:aws_)?(?:access_key_id|secret_access_key|session_token|security_token|"
                rf"secret_key|access_key|secret|token|password|passwd){_Q}{_V})[^'\"\s,}}&]+"),
     rf"\g<1>{REDACTED}"),
    # s3fs storage options ('key': '...'); lower-case and quoted only, so botocore's 'Key' (object paths) stays
    (re.compile(r"""(['"]key['"]\s*:\s*b?['"])[^'"]*"""), rf"\g<1>{REDACTED}"),
    # AWS access key ids wherever they stand
    (re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{16}(?![A-Z0-9])"), REDACTED),
)


def _env_secrets() -> list[str]:
    vals = {os.environ.get(k, "") for k in SECRET_ENV}
    return sorted((v for v in vals if len(v) >= _MIN_LITERAL), key=len, reverse=True)


def redact(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with credentials replaced by ``[REDACTED]`` (see the module docstring for what counts)."""
    for value in _env_secrets() if secrets is None else secrets:
        text = text.replace(value, REDACTED)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter that renders each record's message once, redacts it, and drops the raw arguments.

    Installed on handlers (not loggers), it sees records from every logger that propagates to them. The
    traceback text is rendered and redacted here too (handlers reuse ``record.exc_text``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = _env_secrets()
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what there is, redacted
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = redact(message, secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, secrets)
        return True


def install_redaction(handlers: list[logging.Handler] | None = None) -> None:
    """Add one :class:`RedactingFilter` to ``handlers`` (default: the root logger's, every logger's own, and
    logging's last-resort handler)."""
    if handlers is None:
        handlers = list(logging.getLogger().handlers)
        if logging.lastResort is not None:  # what prints WARNING+ when a process has no handler at all
            handlers.append(logging.lastResort)
        for logger in list(logging.Logger.manager.loggerDict.values()):
            if isinstance(logger, logging.Logger):
                handlers.extend(logger.handlers)
    for h in handlers:
        if not any(isinstance(f, RedactingFilter) for f in h.filters):
            h.addFilter(RedactingFilter())


def resolve_level(verbosity: int, env_level: str | None) -> int:
    """The root level: ``-v``/``-vv`` win; else ``env_level`` (DEBUG/INFO/WARNING/ERROR); else WARNING."""
    if verbosity > 0:
        return logging.WARNING - 10 * min(verbosity, 2)
    name = (env_level or "").strip().upper()
    if name in ("DEBUG", "INFO", "WARNING", "ERROR"):
        return int(getattr(logging, name))
    return logging.WARNING


def set_library_levels(level: int) -> None:
    """The third-party loggers' levels for root level ``level``: WARNING, INFO for distributed at INFO,
    everything at DEBUG."""
    for name in NOISY_LOGGERS:
        if level <= logging.DEBUG:
            lib = logging.DEBUG
        elif level <= logging.INFO and name == "distributed":
            lib = logging.INFO
        else:
            lib = logging.WARNING
        logging.getLogger(name).setLevel(lib)


def configure_logging(verbosity: int = 0, env_level: str | None = None) -> int:
    """Configure the process's logging for the command line; returns the root level.

    One stderr handler on the root logger unless it has handlers already (a previous call's is replaced), the
    redaction filter on it and on every other handler installed (Dask's own, pytest's), library levels as
    described above.
    """
    level = resolve_level(verbosity, env_level)
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_insarcloud", False)]:
        root.removeHandler(h)
    if not root.handlers:  # like basicConfig: an embedding program's (or pytest's) handlers are kept
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._insarcloud = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    set_library_levels(level)
    install_redaction()
    return level


def setup_worker_logging() -> None:
    """For processes we start (Dask worker plugin, Ray ``worker_process_setup_hook``): the level from
    ``$INSARCLOUD_LOG_LEVEL`` for the libraries, and the redaction filter on every handler there is."""
    level = resolve_level(0, os.environ.get(ENV_LEVEL))
    set_library_levels(level)
    install_redaction()


def worker_plugin() -> object:
    """A ``distributed.WorkerPlugin`` that runs :func:`setup_worker_logging` in each worker process."""
    from distributed import WorkerPlugin

    class RedactingWorkerPlugin(WorkerPlugin):
        name = "insarcloud-logging"
        idempotent = True

        def setup(self, worker: object) -> None:
            setup_worker_logging()

    return RedactingWorkerPlugin()
