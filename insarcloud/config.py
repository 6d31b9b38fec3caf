"""The area job's configuration: pydantic models, YAML load/dump, and frame selection from an index.

One YAML file describes an area job (``insarcloud run CONFIG.yaml``, ``python -m insarcloud.pipelines.area_job
CONFIG.yaml``, and the helm chart's ConfigMap)::

    version: 1
    area: {name: central-tibet, bbox: [88.0, 29.0, 92.0, 33.0]}
    frames: [012A_05443_131313, 121D_05402_131313]     # or frame_index_url: s3://licsar/
    source_url: s3://licsar-products
    output_url: s3://insarcloud-results
    storage: {endpoint_url: http://minio.storage:9000, region: us-east-1}
    stages: [ingest, qc, quality, invert, noise, forecast, mosaic]
    params: {invert: {weights: quality_closure}}
    engines: {}                                          # addresses from env or local engines
    report: {points: [{name: lhasa, lon: 91.1, lat: 29.65}]}

Every model forbids unknown keys and every field states its bounds, so a typo or a wrong type is a
:class:`~insarcloud.errors.ConfigError` naming the key before any work starts. Validators only validate;
anything that touches storage (does the bucket exist, which frames does the index hold) happens in the
job's pre-flight step, outside the models. Credentials never go in a config: a key such as
``secret_access_key`` is refused with a message saying where credentials come from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from insarcloud.core.contract import ParamsModel
from insarcloud.core.options import (
    STAGE_ORDER,
    InversionWeights,
    NoiseAlphaMethod,
    NoiseClasses,
    NoiseFlicker,
    NoiseFunctional,
    NoiseSelection,
    NoiseSigmaModel,
    StageName,
    UnwrapMethod,
)
from insarcloud.errors import ConfigError
from insarcloud.forecast.stage import ForecastModel, ForecastParams
from insarcloud.invert.stage import InvertParams
from insarcloud.io.stage_ingest import IngestParams
from insarcloud.noise.stage import NoiseParams
from insarcloud.qc.config import QcParams, RuleParams
from insarcloud.qc.quality_stage import QualityParams
from insarcloud.unwrap.stage import UnwrapParams

if TYPE_CHECKING:  # numpy is imported where the frame-index functions run: the CLI's parser builds from
    import numpy as np  # these models and imports no numpy

__all__ = [
    "ENV_DASK_SCHEDULER",
    "ENV_RAY_ADDRESS",
    "STAGE_ORDER",
    "AreaConfig",
    "AreaJobConfig",
    "EnginesConfig",
    "ForecastModel",
    "ForecastParams",
    "InversionWeights",
    "NoiseAlphaMethod",
    "NoiseClasses",
    "NoiseFlicker",
    "NoiseFunctional",
    "NoiseSelection",
    "NoiseSigmaModel",
    "UnwrapMethod",
    "IngestParams",
    "InvertParams",
    "MosaicParams",
    "NoiseParams",
    "QcParams",
    "QualityParams",
    "ReportConfig",
    "RuleParams",
    "ReportPoint",
    "StageName",
    "StageParams",
    "StorageConfig",
    "UnwrapParams",
    "dump_config",
    "frames_intersecting",
    "load_config",
    "parse_config",
    "parse_poly_txt",
    "polygon_intersects_bbox",
]

ENV_DASK_SCHEDULER = "INSARCLOUD_DASK_SCHEDULER"
ENV_RAY_ADDRESS = "INSARCLOUD_RAY_ADDRESS"

# Stage names and option literals are defined once in insarcloud.core.options (re-exported here); the forecast
# model names are forecast/names.py's ModelName (ForecastModel, through the forecast stage's Params).
RampModel = Literal["none", "linear"]
AddressingStyle = Literal["auto", "virtual", "path"]

FRAME_ID_PATTERN = r"^[0-9]{3}[AD]_[0-9]{5}_[0-9]{6}$"
AREA_NAME_PATTERN = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"
_READ_SCHEMES = ("s3", "s3a", "file", "memory", "https", "http", "gs", "az", "abfs")
_WRITE_SCHEMES = ("s3", "s3a", "file", "memory", "gs", "az", "abfs")
# Keys that would carry a credential. Refused by name so the error says where credentials belong.
_CREDENTIAL_KEYS = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "access_key",
        "secret_key",
        "access_key_id",
        "secret_access_key",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "session_token",
        "credentials",
    }
)


def credential_key_paths(data: Any, _path: str = "") -> list[str]:
    """Dotted paths of every credential-named key (``_CREDENTIAL_KEYS``, any case) in a config tree, at any depth.

    The one place that decides what counts as a credential key: ``parse_config`` refuses a config with any,
    and the helm chart's values schema (``$defs.credentialKeyName``) uses :func:`credential_key_pattern`,
    which a test keeps equal to this set.
    """
    found: list[str] = []
    if isinstance(data, Mapping):
        for k, v in data.items():
            where = f"{_path}.{k}" if _path else str(k)
            if str(k).lower() in _CREDENTIAL_KEYS:
                found.append(where)
            found += credential_key_paths(v, where)
    elif isinstance(data, (list, tuple)):
        for i, v in enumerate(data):
            found += credential_key_paths(v, f"{_path}[{i}]")
    return found


def credential_key_pattern() -> str:
    """``_CREDENTIAL_KEYS`` as one case-insensitive regular expression usable in JSON Schema (ECMA 262 has no
    inline ``(?i)``, so each letter is a class: ``[kK][eE][yY]``)."""
    def word(w: str) -> str:
        return "".join(f"[{c}{c.upper()}]" if c.isalpha() else re.escape(c) for c in w)

    return "^(" + "|".join(word(w) for w in sorted(_CREDENTIAL_KEYS)) + ")$"


#: Base of every model here: unknown keys are errors, instances are immutable (configs are validated, never
#: mutated); the stages' Params models share it (insarcloud.core.contract).
_Model = ParamsModel


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def _check_url(url: str, schemes: Sequence[str], what: str) -> str:
    if not url.strip():
        raise ValueError(f"{what} is empty")
    if re.match(r"^[a-z0-9+.-]+://[^/]*@", url, flags=re.IGNORECASE):
        raise ValueError(f"{what} must not embed user:password@ (credentials come from the environment)")
    scheme = _scheme(url)
    if scheme not in schemes:
        raise ValueError(f"{what} scheme {scheme!r} is not one of {', '.join(schemes)}")
    return url


# --------------------------------------------------------------------------------------------------
# Area, storage, engines, report


class AreaConfig(_Model):
    """The area: a name (used in ``areas/{name}.zarr`` and Kubernetes names) and a bounding box."""

    name: str = Field(
        description="Area name: lower-case letters, digits, '-' and '_', 1-63 characters.",
        pattern=AREA_NAME_PATTERN,
    )
    description: str = Field("", description="Free text shown in the report.", max_length=500)
    bbox: tuple[
        Annotated[float, Field(ge=-180.0, le=180.0)],
        Annotated[float, Field(ge=-90.0, le=90.0)],
        Annotated[float, Field(ge=-180.0, le=180.0)],
        Annotated[float, Field(ge=-90.0, le=90.0)],
    ] = Field(description="[lon_min, lat_min, lon_max, lat_max] in degrees (EPSG:4326); no antimeridian crossing.")

    @field_validator("bbox")
    @classmethod
    def _bbox_ordered(cls, v: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        lon_min, lat_min, lon_max, lat_max = v
        if not lon_min < lon_max:
            raise ValueError(f"lon_min {lon_min} must be < lon_max {lon_max} (antimeridian boxes are not supported)")
        if not lat_min < lat_max:
            raise ValueError(f"lat_min {lat_min} must be < lat_max {lat_max}")
        return v


class StorageConfig(_Model):
    """Where the object store is (never who you are: credentials come from the environment).

    Every field left unset falls back to the environment (``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``)
    and then to the AWS defaults, so the same config runs against AWS, MinIO/Ceph, or a local moto server.
    """

    endpoint_url: str | None = Field(
        None,
        description="S3 endpoint URL (MinIO, Ceph RGW, moto); unset = AWS_ENDPOINT_URL or AWS.",
        max_length=2048,
    )
    region: str | None = Field(
        None, description="Region name; unset = AWS_DEFAULT_REGION.", pattern=r"^[a-z0-9-]{1,32}$"
    )
    anon: bool = Field(False, description="Anonymous access (public buckets); no signing at all.")
    requester_pays: bool = Field(False, description="Send the requester-pays header.")
    addressing_style: AddressingStyle = Field(
        "auto", description="S3 addressing: 'path' for most MinIO/Ceph setups, 'virtual' for AWS."
    )
    verify_tls: bool = Field(True, description="Verify the endpoint's TLS certificate.")

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for k in data:
                if str(k).lower() in _CREDENTIAL_KEYS:
                    raise ValueError(
                        f"credential key {k!r} is not allowed in a config: credentials come from the environment "
                        "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a Kubernetes Secret, IRSA or workload identity)"
                    )
        return data

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v, ("http", "https"), "endpoint_url")

    def storage_options(self) -> dict[str, Any]:
        """s3fs ``storage_options`` for the set fields only (the environment supplies the rest)."""
        opts: dict[str, Any] = {}
        client_kwargs: dict[str, Any] = {}
        config_kwargs: dict[str, Any] = {}
        if self.endpoint_url:
            opts["endpoint_url"] = self.endpoint_url
        if self.region:
            client_kwargs["region_name"] = self.region
        if self.anon:
            opts["anon"] = True
        if self.requester_pays:
            opts["requester_pays"] = True
        if self.addressing_style != "auto":
            config_kwargs["s3"] = {"addressing_style": self.addressing_style}
        if not self.verify_tls:
            client_kwargs["verify"] = False
        if client_kwargs:
            opts["client_kwargs"] = client_kwargs
        if config_kwargs:
            opts["config_kwargs"] = config_kwargs
        return opts


class EnginesConfig(_Model):
    """Engine addresses. Each one resolves config -> environment -> local engine (see the methods)."""

    dask_scheduler: str | None = Field(
        None,
        description=f"Dask scheduler address (tcp://host:8786, tls://...); unset = ${ENV_DASK_SCHEDULER} "
        "or a LocalCluster.",
        pattern=r"^(tcp|tls|ucx|inproc)://[^\s/]+$",
    )
    ray_address: str | None = Field(
        None,
        description=f"Ray address (ray://head:10001, or 'auto' for a node of a running cluster); unset = "
        f"${ENV_RAY_ADDRESS} or a local ray.init().",
        pattern=r"^(ray://[^\s/]+|auto|[A-Za-z0-9.-]+:[0-9]+)$",
    )
    # The local_* fields size the embedded engines of insarcloud.engines (dask_client's LocalCluster, init_ray's
    # local Ray); they are ignored when an address is given (the cluster is sized by whoever runs it).
    local_workers: int | None = Field(None, ge=1, le=256, description="LocalCluster worker processes when no "
                                      "scheduler is given; unset = one per CPU, at most 4.")
    local_threads_per_worker: int = Field(1, ge=1, le=64, description="Threads per LocalCluster worker.")
    local_memory_limit: str | None = Field(
        None, pattern=r"^(auto|[0-9]+(\.[0-9]+)?\s*([kKMGT]i?B?|B)?)$",
        description="memory_limit of each LocalCluster worker (e.g. 4GiB; 'auto' = Dask's system memory / "
        "workers); unset = insarcloud.engines.WORKER_MEMORY_LIMIT (4GiB, what the stages are sized for), at most "
        "the machine's memory / workers.")
    local_malloc_threshold: int | None = Field(
        None, ge=0, le=2**30, description="glibc's trim and mmap thresholds (bytes) of each LocalCluster worker "
        "(e.g. 33554432: ~20 % less worker CPU, ~1 GB more peak memory in the inversion at 700 pairs; "
        "docs/scale.md); unset or 0 = Dask's setting.")
    local_ray_cpus: int | None = Field(None, ge=1, le=1024, description="num_cpus for a local ray.init(); unset = all.")
    max_parallel_frames: int | None = Field(
        None, ge=1, le=1024, description="Frames processed at once; unset = set by the Dask workers' memory "
        "(insarcloud.pipelines.area_job.frames_in_flight), never by the frame count.")

    def resolved_dask_scheduler(self, env: Mapping[str, str] | None = None) -> str | None:
        """The scheduler address to connect to, or None for a LocalCluster (config, then environment)."""
        env = os.environ if env is None else env
        return self.dask_scheduler or (env.get(ENV_DASK_SCHEDULER) or "").strip() or None

    def resolved_ray_address(self, env: Mapping[str, str] | None = None) -> str | None:
        """The Ray address to connect to, or None for a local ``ray.init()`` (config, then environment)."""
        env = os.environ if env is None else env
        return self.ray_address or (env.get(ENV_RAY_ADDRESS) or "").strip() or None


class ReportPoint(_Model):
    """A point whose time series and forecast the report plots."""

    name: str = Field(description="Label in the report.", pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")
    lon: float = Field(ge=-180.0, le=180.0, description="Longitude, degrees east.")
    lat: float = Field(ge=-90.0, le=90.0, description="Latitude, degrees north.")


class ReportConfig(_Model):
    """The per-area HTML report."""

    enabled: bool = Field(True, description="Write the HTML report with PNG maps.")
    points: list[ReportPoint] = Field(
        default_factory=list, max_length=50, description="Points for time-series and forecast plots."
    )
    dpi: int = Field(120, ge=50, le=600, description="PNG resolution.")
    truth_url: str | None = Field(
        None, description="Simulated inputs only: URL pattern of the simulator's truth cubes ({frame}, "
        "{output_url} are filled in). When set, the run summary and the report carry velocity RMSE against it.")

    @field_validator("points")
    @classmethod
    def _unique_names(cls, v: list[ReportPoint]) -> list[ReportPoint]:
        names = [p.name for p in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"report point names must be unique; repeated: {dup}")
        return v


# --------------------------------------------------------------------------------------------------
# Per-stage parameters. Each stage's Params model is defined in the stage's own module (insarcloud/<stage>/stage.py,
# insarcloud.qc.config for qc) and imported above: the section of the config IS the stage's model (one definition
# of every option, docs/STAGES.md "Adding a stage"). The mosaic's stays here: insarcloud.mosaic imports numpy on
# import, and this module (the CLI's parser) must not.


class MosaicParams(_Model):
    """Multi-frame mosaic into the area cube (``insarcloud.mosaic.area.run_mosaic``)."""

    ramp: RampModel = Field("none", description="Per-frame correction besides the offset: none or linear ramp.")
    min_overlap_pixels: int = Field(100, ge=1, le=10**8, description="Overlaps smaller than this are not used.")
    precision_group: str | None = Field(
        "noise", description="Take velocity and its precision from this group (the noise stage's GLS velocity "
        "under the estimated noise model) where a frame has it; null: the ts group's white-noise precision.")
    gnss_csv: str | None = Field(
        None, max_length=2048, description="CSV of GNSS velocities (station, lon, lat, ve, vn, vu, sigmas) to tie to."
    )
    reference_box: (
        tuple[
            Annotated[float, Field(ge=-180.0, le=180.0)],
            Annotated[float, Field(ge=-90.0, le=90.0)],
            Annotated[float, Field(ge=-180.0, le=180.0)],
            Annotated[float, Field(ge=-90.0, le=90.0)],
        ]
        | None
    ) = Field(None, description="[lon_min, lat_min, lon_max, lat_max] whose mean velocity is set to zero.")
    memory_budget_mb: int = Field(
        512, ge=16, le=1024**2, description="Driver memory the mosaic may hold at once (MiB): it sets the area "
        "chunk side and how many chunks run together (docs/scale.md); it does not change the result.")


class StageParams(_Model):
    """Parameters of each stage; a stage left out uses its defaults."""

    ingest: IngestParams = Field(default_factory=IngestParams, description="ingest parameters")
    qc: QcParams = Field(default_factory=QcParams, description="qc parameters")
    quality: QualityParams = Field(default_factory=QualityParams, description="quality parameters")
    unwrap: UnwrapParams = Field(default_factory=UnwrapParams, description="unwrap parameters")
    invert: InvertParams = Field(default_factory=InvertParams, description="invert parameters")
    noise: NoiseParams = Field(default_factory=NoiseParams, description="noise parameters")
    forecast: ForecastParams = Field(default_factory=ForecastParams, description="forecast parameters")
    mosaic: MosaicParams = Field(default_factory=MosaicParams, description="mosaic parameters")


# --------------------------------------------------------------------------------------------------
# The job


class AreaJobConfig(_Model):
    """An area job: which frames, from where, to where, which stages with which parameters, on which engines."""

    version: Literal[1] = Field(1, description="Config schema version.")
    area: AreaConfig = Field(description="Area name and bounding box.")
    frames: list[Annotated[str, Field(pattern=FRAME_ID_PATTERN)]] | None = Field(
        None, min_length=1, max_length=1000, description="LiCSAR frame ids, e.g. 012A_05443_131313."
    )
    frame_index_url: str | None = Field(
        None,
        max_length=2048,
        description="Root of a LiCSAR tree whose {frame}/metadata/{frame}-poly.txt polygons are intersected with "
        "the bbox to find frames (instead of listing them).",
    )
    source_url: str = Field(
        max_length=2048, description="LiCSAR products root: {source_url}/{frame}/interferograms/..."
    )
    output_url: str = Field(
        max_length=2048, description="Results root: {output_url}/cubes/{frame}.zarr and {output_url}/areas/{name}.zarr."
    )
    storage: StorageConfig = Field(
        default_factory=StorageConfig, description="Object store of output_url (and source)."
    )
    source_storage: StorageConfig | None = Field(
        None, description="Object store of source_url when it differs (e.g. a public bucket, anon: true)."
    )
    stages: list[StageName] = Field(
        default_factory=lambda: [s for s in STAGE_ORDER if s != "unwrap"],
        min_length=1,
        max_length=len(STAGE_ORDER),
        description="Stages to run; they always run in the order ingest, qc, quality, unwrap, invert, noise, "
        "forecast, mosaic.",
    )
    params: StageParams = Field(default_factory=StageParams, description="Per-stage parameters.")
    engines: EnginesConfig = Field(default_factory=EnginesConfig, description="Dask and Ray addresses.")
    report: ReportConfig = Field(default_factory=ReportConfig, description="HTML report settings.")
    max_failed_frames: int | None = Field(
        None, ge=0, le=1000, description="Fail the job when more frames fail than this; unset = never (report them)."
    )

    @field_validator("frames")
    @classmethod
    def _unique_frames(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            dup = sorted({f for f in v if v.count(f) > 1})
            if dup:
                raise ValueError(f"frames are repeated: {dup}")
        return v

    @field_validator("frame_index_url", "source_url")
    @classmethod
    def _read_url(cls, v: str | None, info: Any) -> str | None:
        return None if v is None else _check_url(v, _READ_SCHEMES, info.field_name)

    @field_validator("output_url")
    @classmethod
    def _write_url(cls, v: str) -> str:
        return _check_url(v, _WRITE_SCHEMES, "output_url")

    @field_validator("stages")
    @classmethod
    def _unique_stages(cls, v: list[str]) -> list[str]:
        dup = sorted({s for s in v if v.count(s) > 1})
        if dup:
            raise ValueError(f"stages are repeated: {dup}")
        return v

    @model_validator(mode="after")
    def _frames_or_index(self) -> AreaJobConfig:
        if (self.frames is None) == (self.frame_index_url is None):
            raise ValueError("give exactly one of 'frames' (a list of LiCSAR frame ids) or 'frame_index_url'")
        if self.report.points:
            lon_min, lat_min, lon_max, lat_max = self.area.bbox
            outside = [
                p.name for p in self.report.points if not (lon_min <= p.lon <= lon_max and lat_min <= p.lat <= lat_max)
            ]
            if outside:
                raise ValueError(f"report points outside area.bbox: {outside}")
        return self

    # Derived values: plain functions of the fields, no I/O.
    def ordered_stages(self) -> list[StageName]:
        """The configured stages in execution order."""
        return [s for s in STAGE_ORDER if s in self.stages]

    def cube_url(self, frame: str) -> str:
        """URL of a frame cube."""
        return f"{self.output_url.rstrip('/')}/cubes/{frame}.zarr"

    def area_url(self) -> str:
        """URL of the area cube."""
        return f"{self.output_url.rstrip('/')}/areas/{self.area.name}.zarr"

    def output_storage_options(self) -> dict[str, Any]:
        """storage_options for output_url (set fields only; the environment supplies the rest)."""
        return self.storage.storage_options()

    def source_storage_options(self) -> dict[str, Any]:
        """storage_options for source_url."""
        return (self.source_storage or self.storage).storage_options()

    def to_yaml(self) -> str:
        """YAML text that :func:`parse_config` turns back into an equal config."""
        return dump_config(self)


# --------------------------------------------------------------------------------------------------
# YAML in and out


_USERINFO = re.compile(r"([a-z0-9+.-]+://)[^/@\s']+@", flags=re.IGNORECASE)


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        # pydantic appends the Literal/union branch or validator name to loc; drop the non-key parts.
        loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
        key = _loc(loc)
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'")
        elif err["type"] == "missing" and loc and isinstance(loc[-1], int):
            lines.append(f"key '{_loc(loc[:-1])}': too few items (item [{loc[-1]}] is missing)")
        elif err["type"] == "missing":
            lines.append(f"missing key '{key}'")
        else:
            got = err.get("input")
            # user:password@ in a URL is masked: a rejected value must not leak a secret into logs.
            got_txt = (
                ""
                if isinstance(got, Mapping | list)
                else _USERINFO.sub(r"\1***@", f" (got {type(got).__name__} {got!r})")
            )
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"key '{key}': {msg}{got_txt}")
    return f"invalid config {source}:\n  " + "\n  ".join(lines)


def parse_config(data: Mapping[str, Any] | str, source: str = "<config>") -> AreaJobConfig:
    """Validate a mapping (or YAML text) into an :class:`AreaJobConfig`.

    Raises
    ------
    ConfigError
        Naming ``source`` and each bad key with what was wrong with it.
    """
    if isinstance(data, str):
        try:
            data = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            raise ConfigError(f"invalid YAML in {source}{where}: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping, got {type(data).__name__}")
    bad = credential_key_paths(data)
    if bad:
        where = "; ".join(
            f"key '{p.rpartition('.')[0] or '(top level)'}': credential key '{p.rpartition('.')[2]}'" for p in bad
        )
        raise ConfigError(
            f"invalid config {source}: {where} not allowed in a config: credentials come from the environment "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a Kubernetes Secret, IRSA or workload identity)"
        )
    try:
        return AreaJobConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from exc


def load_config(path_or_url: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> AreaJobConfig:
    """Read and validate an area-job config from a path or URL (``s3://``, ``https://``, ``file://``).

    Raises
    ------
    ConfigError
        When the file cannot be read, is not YAML, or a key or type is wrong (the message names it).
    """
    source = os.fspath(path_or_url)
    try:
        if "://" not in source or source.startswith("file://"):
            text = Path(source.removeprefix("file://")).read_text(encoding="utf-8")
        else:
            from insarcloud.io.storage import read_bytes

            text = read_bytes(source, storage_options).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {source}: {exc}") from exc
    return parse_config(text, source)


def dump_config(cfg: AreaJobConfig, *, exclude_defaults: bool = False) -> str:
    """YAML text of ``cfg`` (JSON-compatible types, keys in model order)."""
    data = cfg.model_dump(mode="json", exclude_defaults=exclude_defaults)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110)


# --------------------------------------------------------------------------------------------------
# Frame index: LiCSAR metadata/{frame}-poly.txt polygons (pure functions; the pipeline reads the files)


def parse_poly_txt(text: str, source: str = "<poly.txt>") -> np.ndarray:
    """Parse a LiCSAR ``{frame}-poly.txt``: one ``lon lat`` vertex per line.

    Returns
    -------
    ndarray, shape (n, 2), float64
        Vertices (lon, lat) in degrees, n >= 3.

    Raises
    ------
    ConfigError
        When a line is not two numbers or there are fewer than three vertices (names ``source``).
    """
    import numpy as np

    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        try:
            lon, lat = (float(p) for p in parts)
        except ValueError as exc:
            raise ConfigError(f"{source} line {i}: expected 'lon lat', got {line.strip()!r}") from exc
        rows.append((lon, lat))
    if len(rows) < 3:
        raise ConfigError(f"{source}: a frame polygon needs at least 3 vertices, got {len(rows)}")
    return np.asarray(rows, dtype=np.float64)


def _segments_cross(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> bool:
    def orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    return (d1 * d2 <= 0) and (d3 * d4 <= 0)


def _point_in_polygon(pt: np.ndarray, poly: np.ndarray) -> bool:
    x, y = pt
    inside = False
    n = len(poly)
    for i in range(n):
        (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def polygon_intersects_bbox(poly: np.ndarray, bbox: Sequence[float]) -> bool:
    """Whether a polygon (n, 2) lon/lat and a box [lon_min, lat_min, lon_max, lat_max] share any area or edge.

    Hand-written (a vertex-in-box, corner-in-polygon and edge-crossing test) so the config needs no
    geometry library for a handful of frame outlines.
    """
    import numpy as np

    lon_min, lat_min, lon_max, lat_max = bbox
    lon, lat = poly[:, 0], poly[:, 1]
    if lon.max() < lon_min or lon.min() > lon_max or lat.max() < lat_min or lat.min() > lat_max:
        return False
    in_box = (poly[:, 0] >= lon_min) & (poly[:, 0] <= lon_max) & (poly[:, 1] >= lat_min) & (poly[:, 1] <= lat_max)
    if in_box.any():
        return True
    corners = np.array([[lon_min, lat_min], [lon_max, lat_min], [lon_max, lat_max], [lon_min, lat_max]])
    if any(_point_in_polygon(c, poly) for c in corners):
        return True
    n = len(poly)
    return any(
        _segments_cross(poly[i], poly[(i + 1) % n], corners[j], corners[(j + 1) % 4])
        for i in range(n)
        for j in range(4)
    )


def frames_intersecting(
    polygons: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]], bbox: Sequence[float]
) -> list[str]:
    """Sorted frame ids whose polygon intersects ``bbox``."""
    items = polygons.items() if isinstance(polygons, Mapping) else polygons
    return sorted(frame for frame, poly in items if polygon_intersects_bbox(poly, bbox))
