"""COMET-LiCSAR frame products: layout, discovery on any fsspec URL, metadata parsing, GeoTIFF reading.

Layout (LiCSAR's public tree)::

    <root>/<track>/<frame>/interferograms/YYYYMMDD_YYYYMMDD/YYYYMMDD_YYYYMMDD.geo.{unw,cc,diff_pha}.tif
    <root>/<track>/<frame>/epochs/YYYYMMDD/YYYYMMDD.geo.mli.tif
    <root>/<track>/<frame>/metadata/{<frame>.geo.{E,N,U,hgt}.tif, baselines, metadata.txt,
                                     <frame>.geo.landmask.tif, <frame>-poly.txt}

Conventions: unw float32 rad, 0 = no data; cc uint8 0..255 (/255, 0 = no data; float32 0..1 accepted);
diff_pha float32 rad, 0 = no data; E/N/U/hgt 0 = no data; EPSG:4326 at 0.001 degree.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from insarcloud.core.pairs import PAIR_RE
from insarcloud.core.pairs import pair_problem as pair_name_problem
from insarcloud.errors import GridMismatchError, MissingProductError, ProductError, ProductValueError
from insarcloud.io.storage import get_fs, join, protocol_of, storage_options_for, with_retries

log = logging.getLogger(__name__)

FRAME_RE = re.compile(r"^\d{3}[AD]_\d{5}_\d{6}$")
PairKind = Literal["unw", "cc", "diff_pha"]
PAIR_KINDS: tuple[PairKind, ...] = ("diff_pha", "cc", "unw")
STATIC_KINDS = ("hgt", "E", "N", "U", "landmask")
STATIC_VAR = {"hgt": "hgt", "E": "los_e", "N": "los_n", "U": "los_u", "landmask": "landmask"}
GRID_TOL_DEG = 1e-6  # LiCSAR's own landmask differs from its rasters by ~1e-15 deg


@dataclass(frozen=True)
class ProductRef:
    """One object in the source tree, with what identifies its version (provenance)."""

    url: str
    size: int
    etag: str


@dataclass
class FrameProducts:
    """Everything discovered for one frame; ``missing`` names what the layout has and this frame lacks."""

    frame: str
    url: str
    pairs: dict[str, dict[str, ProductRef]] = field(default_factory=dict)
    statics: dict[str, ProductRef] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)
    polygon: list[tuple[float, float]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    # Products present but unusable, found while listing and parsing (a folder named for an impossible date,
    # a metadata file that is not UTF-8 or holds a non-number): {frame-relative path: reason}. The rest of
    # the frame is ingested; ingest reports these as failed.
    problems: dict[str, str] = field(default_factory=dict)
    # The small metadata files' versions (ETag or size-mtime), so that a corrected file can be told apart.
    metadata_refs: dict[str, ProductRef] = field(default_factory=dict)


def validate_frame_id(frame: str) -> str:
    if not FRAME_RE.match(frame):
        raise ProductError(f"frame id {frame!r} does not match LiCSAR's NNN[AD]_NNNNN_NNNNNN")
    return frame


def frame_url(source_url: str, frame: str, storage_options: dict[str, Any] | None = None) -> str:
    """The frame directory under ``source_url``: ``<root>/<track>/<frame>``, ``<root>/<frame>`` or the
    frame directory itself."""
    validate_frame_id(frame)
    base = source_url.rstrip("/")
    if base.endswith(frame):
        return base
    fs, _ = get_fs(base, storage_options)
    for cand in (join(base, str(int(frame[:3])), frame), join(base, frame[:3], frame), join(base, frame)):
        _, path = get_fs(cand, storage_options)
        if with_retries(fs.exists, path) or with_retries(fs.exists, path + "/"):
            return cand
    raise MissingProductError(f"frame {frame} not found under {source_url} (tried <track>/<frame> and <frame>)")


def _etag(info: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "e_tag"):
        if info.get(key):
            return str(info[key]).strip('"')
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or ""
    return f"{info.get('size', '')}-{mtime}"


def _url_of(fs: Any, base_url: str, path: str) -> str:
    proto = protocol_of(base_url)
    if proto in ("http", "https") or path.startswith(("http://", "https://")):
        return path
    if proto == "file":
        return path
    return f"{proto}://{path}"


def _list(fs: Any, path: str) -> list[dict[str, Any]]:
    try:
        return list(with_retries(fs.ls, path, detail=True))
    except FileNotFoundError:
        return []


def _pair_files(fs: Any, ifg_root: str, protocol: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``{pair_dir_name: {file_name: info}}`` under ``interferograms/``.

    Object stores and local disks answer one recursive listing (``find``: one request per 1000 keys on
    S3) instead of one listing per pair directory; HTTP directory trees are walked one level at a time,
    as LiCSAR's web server offers nothing else."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if protocol in _FLAT_LISTING:
        try:
            found = with_retries(fs.find, ifg_root, detail=True)
        except FileNotFoundError:
            return out
        root = ifg_root.rstrip("/") + "/"
        for path, info in found.items():
            rel = path[len(root):] if path.startswith(root) else path
            parts = rel.split("/")
            if len(parts) == 2:
                out.setdefault(parts[0], {})[parts[1]] = info
        return out
    for entry in _list(fs, ifg_root):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if PAIR_RE.match(name):
            out[name] = {e["name"].rstrip("/").rsplit("/", 1)[-1]: e for e in _list(fs, entry["name"].rstrip("/"))}
    return out


_FLAT_LISTING = ("s3", "s3a", "gs", "gcs", "az", "abfs", "memory", "file")


def discover_frame(source_url: str, frame: str, storage_options: dict[str, Any] | None = None) -> FrameProducts:
    """List a frame's products on any fsspec URL (s3://, file://, https:// directory listings)."""
    furl = frame_url(source_url, frame, storage_options)
    fs, fpath = get_fs(furl, storage_options)
    out = FrameProducts(frame=frame, url=furl)
    ifg_root = f"{fpath.rstrip('/')}/interferograms"
    for name, files in sorted(_pair_files(fs, ifg_root, protocol_of(furl)).items()):
        m = PAIR_RE.match(name)
        if not m:
            continue
        reason = pair_name_problem(name)
        if reason is not None:
            log.warning("skipping interferograms/%s: %s", name, reason)
            out.problems[f"interferograms/{name}"] = reason
            continue
        refs: dict[str, ProductRef] = {}
        for kind in PAIR_KINDS:
            fname = f"{name}.geo.{kind}.tif"
            if fname in files:
                info = files[fname]
                refs[kind] = ProductRef(_url_of(fs, furl, info["name"]), int(info.get("size") or 0), _etag(info))
            else:
                out.missing.append(f"interferograms/{name}/{fname}")
        out.pairs[name] = refs
    meta_root = f"{fpath.rstrip('/')}/metadata"
    meta_files = {e["name"].rstrip("/").rsplit("/", 1)[-1]: e for e in _list(fs, meta_root)}
    for kind in STATIC_KINDS:
        fname = f"{frame}.geo.{kind}.tif"
        if fname in meta_files:
            info = meta_files[fname]
            out.statics[kind] = ProductRef(_url_of(fs, furl, info["name"]), int(info.get("size") or 0), _etag(info))
        else:
            out.missing.append(f"metadata/{fname}")
    texts = {"metadata.txt": "", "baselines": "", f"{frame}-poly.txt": ""}
    wanted = [n for n in texts if n in meta_files]
    for n in wanted:
        info = meta_files[n]
        out.metadata_refs[f"metadata/{n}"] = ProductRef(_url_of(fs, furl, info["name"]), int(info.get("size") or 0),
                                                        _etag(info))
    if wanted:  # the small text files in one concurrent batch
        # cat_ranges, not cat: cat first asks for every path's info (one HEAD each on S3)
        got = with_retries(fs.cat_ranges, [f"{meta_root}/{n}" for n in wanted], None, None)
        for n, data in zip(wanted, got, strict=True):
            if isinstance(data, Exception) and _is_transient(data):
                # the endpoint, not the file: fetched again, then a storage error naming the endpoint
                data = with_retries(fs.cat_file, f"{meta_root}/{n}")
            if isinstance(data, BaseException):
                out.problems[f"metadata/{n}"] = f"cannot read ({data})"
                texts.pop(n)
                continue
            try:
                texts[n] = bytes(data).decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = bytes(data)[exc.start:exc.start + 4]
                out.problems[f"metadata/{n}"] = f"not UTF-8 text (at byte {exc.start}: {bad!r})"
                texts.pop(n)
    parsers = {"metadata.txt": ("metadata", parse_metadata_txt), "baselines": ("baselines", parse_baselines),
               f"{frame}-poly.txt": ("polygon", parse_polygon)}
    for n, (attr, parse) in parsers.items():
        if n not in meta_files:
            if n != f"{frame}-poly.txt":
                out.missing.append(f"metadata/{n}")
            continue
        if n not in texts:
            continue
        try:
            setattr(out, attr, parse(texts[n]))
        except ProductError as exc:  # one bad metadata file is that file's failure, not the frame's
            out.problems[f"metadata/{n}"] = str(exc)
    for problem in out.problems.items():
        log.warning("%s: %s: %s", frame, *problem)
    if not out.pairs:
        raise MissingProductError(f"no interferograms under {join(furl, 'interferograms')}")
    return out


def _is_transient(exc: Exception) -> bool:
    from insarcloud.io.storage import is_transient

    return is_transient(exc)


# Numeric metadata.txt keys the cube's attributes use; any other value stays a string.
NUMERIC_METADATA = ("heading", "avg_incidence_angle")


def parse_metadata_txt(text: str) -> dict[str, str]:
    """LiCSAR ``metadata.txt``: ``key=value`` lines (master, heading, avg_incidence_angle, ...).

    Raises ProductError naming the key and line when a key the cube uses as a number
    (:data:`NUMERIC_METADATA`) is not one (``heading=n/a``)."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
            if key.strip() in NUMERIC_METADATA and not _is_number(value):
                raise ProductError(f"metadata.txt line {n}: {key.strip()}={value.strip()!r} is not a number")
    return out


def _is_number(text: str) -> bool:
    try:
        return np.isfinite(float(text))
    except ValueError:
        return False


def parse_baselines(text: str) -> dict[str, float]:
    """LiCSAR ``baselines``: rows ``refdate date bperp btemp``; returns {YYYYMMDD: bperp_m}.

    Raises ProductError naming the line when a row is short, its date is no date or bperp no number."""
    import datetime as _dt

    out: dict[str, float] = {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 4:
            raise ProductError(f"baselines line {n} has {len(parts)} columns, expected 4: {line!r}")
        try:
            _dt.datetime.strptime(parts[1], "%Y%m%d")
            value = float(parts[2])
        except ValueError as exc:
            raise ProductError(f"baselines line {n}: {line.strip()!r} ({exc})") from exc
        if not np.isfinite(value):
            raise ProductError(f"baselines line {n}: bperp {parts[2]!r} is not a finite number")
        out[parts[1]] = value
    return out


def parse_polygon(text: str) -> list[tuple[float, float]]:
    """LiCSAR ``<frame>-poly.txt``: one ``lon lat`` vertex per line. Raises ProductError naming the line
    when a vertex is not two numbers within -180..180, -90..90 (a polygon missing a vertex is wrong)."""
    pts = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            lon, lat = float(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            raise ProductError(f"-poly.txt line {n}: {line.strip()!r} is not 'lon lat'") from None
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise ProductError(f"-poly.txt line {n}: {line.strip()!r} is outside -180..180, -90..90")
        pts.append((lon, lat))
    return pts


# ---------------------------------------------------------------------------------------------
# GeoTIFF access (rasterio over fsspec: GDAL reads ranges through the same filesystem object)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """What a product's header says about its grid."""

    url: str
    shape: tuple[int, int]
    transform: tuple[float, ...]
    dtype: str
    crs_epsg: int | None


class _Opened:
    """A rasterio dataset opened inside its own GDAL environment (closed together)."""

    def __init__(self, env: Any, ds: Any) -> None:
        self.env, self.ds = env, ds

    def __enter__(self) -> Any:
        return self.ds

    def __exit__(self, *exc: Any) -> None:
        try:
            self.ds.close()
        finally:
            self.env.__exit__(*exc)


def gdal_s3_env(storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """GDAL configuration equivalent to s3fs ``storage_options`` (endpoint, addressing, credentials)."""
    from urllib.parse import urlparse

    so = storage_options_for("s3://x", storage_options)
    env: dict[str, Any] = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif"}
    endpoint = so.get("endpoint_url") or (so.get("client_kwargs") or {}).get("endpoint_url")
    if endpoint:
        parsed = urlparse(endpoint)
        env.update(AWS_S3_ENDPOINT=parsed.netloc, AWS_HTTPS="YES" if parsed.scheme == "https" else "NO",
                   AWS_VIRTUAL_HOSTING="FALSE")
    if so.get("anon"):
        env["AWS_NO_SIGN_REQUEST"] = "YES"
    return env


def _gdal_session(storage_options: dict[str, Any] | None) -> Any:
    """Credentials for GDAL. When the process environment already holds them (the usual case, and IRSA), a
    DummySession lets GDAL read them itself instead of rasterio building a boto3 session per open (~0.1 s);
    explicit keys in ``storage_options`` go through rasterio's AWSSession."""
    import os

    from rasterio.session import AWSSession, DummySession

    so = storage_options or {}
    key = so.get("key")
    if not key or (key == os.environ.get("AWS_ACCESS_KEY_ID") and so.get("secret") == os.environ.get(
            "AWS_SECRET_ACCESS_KEY")):
        return DummySession()
    return AWSSession(aws_access_key_id=key, aws_secret_access_key=so.get("secret"),
                      aws_session_token=so.get("token"), region_name=os.environ.get("AWS_DEFAULT_REGION"))


def _open(url: str, storage_options: dict[str, Any] | None):
    """Open a GeoTIFF for reading. S3 and HTTP go through GDAL's own /vsis3/ and /vsicurl/ readers, which
    read a strip-organised LiCSAR GeoTIFF ~3x faster than GDAL reading through a Python fsspec file;
    other protocols (memory://, gcs://, ...) use the fsspec opener."""
    import rasterio

    proto = protocol_of(url)
    if proto == "file":
        return rasterio.open(url.removeprefix("file://"))
    if proto in ("s3", "s3a"):
        env = rasterio.Env(session=_gdal_session(storage_options), **gdal_s3_env(storage_options))
        env.__enter__()
        try:
            return _Opened(env, rasterio.open("/vsis3/" + url.split("://", 1)[1]))
        except Exception:
            env.__exit__(None, None, None)
            raise
    if proto in ("http", "https"):
        env = rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR")
        env.__enter__()
        try:
            return _Opened(env, rasterio.open("/vsicurl/" + url))
        except Exception:
            env.__exit__(None, None, None)
            raise
    fs, path = get_fs(url, storage_options)
    return rasterio.open(path, opener=fs)


def forget_gdal_cache(url: str) -> None:
    """Drop what GDAL's /vsis3/ and /vsicurl/ readers cached (best effort; no-op for other protocols).

    GDAL caches object sizes, headers and blocks per path for the life of the process: after an endpoint
    outage the same object reads as "not recognized as being in a supported file format", and a corrected
    file at the same URL is read from the old bytes, until the cache goes (both measured, docs/ingest.md).
    rasterio has no binding for it, so ``VSICurlClearCache`` is called from the libgdal rasterio loaded;
    ``VSICurlPartialClearCache`` for the one path left the stale bytes in place (GDAL 3.10), hence the
    whole cache: a product is read once per run, so nothing a later open could use is lost."""
    import ctypes

    if protocol_of(url) not in ("s3", "s3a", "http", "https"):
        return
    global _LIBGDAL
    if _LIBGDAL is None:
        try:
            import rasterio  # noqa: F401  (loads libgdal)

            with open("/proc/self/maps") as f:
                paths = [ln.split()[-1] for ln in f if "libgdal" in ln and "/" in ln]
            _LIBGDAL = ctypes.CDLL(paths[0]) if paths else False
        except OSError:
            _LIBGDAL = False
    if _LIBGDAL:
        _LIBGDAL.VSICurlClearCache()


_LIBGDAL: Any = None


def read_header(url: str, storage_options: dict[str, Any] | None = None) -> Header:
    """Read only the GeoTIFF header; a corrupt or non-TIFF file is a ProductError naming it."""
    import rasterio

    try:
        with _open(url, storage_options) as ds:
            epsg = ds.crs.to_epsg() if ds.crs else None
            return Header(url, (ds.height, ds.width), tuple(ds.transform)[:6], ds.dtypes[0], epsg)
    except (rasterio.errors.RasterioError, OSError, ValueError) as exc:
        raise ProductError(f"{url}: cannot read GeoTIFF header ({exc})") from exc


def check_grid(header: Header, shape: tuple[int, int], transform: tuple[float, ...]) -> None:
    """Raise GridMismatchError unless ``header`` is on the frame grid (EPSG:4326, same shape/transform)."""
    if header.crs_epsg != 4326:
        raise GridMismatchError(f"{header.url}: CRS is EPSG:{header.crs_epsg}, expected EPSG:4326")
    if tuple(header.shape) != tuple(shape):
        raise GridMismatchError(f"{header.url}: shape {header.shape} differs from the frame grid {tuple(shape)}")
    if not np.allclose(header.transform, transform[:6], atol=GRID_TOL_DEG, rtol=0):
        raise GridMismatchError(f"{header.url}: geotransform {header.transform} differs from the frame's {transform}")


def header_of(ds: Any, url: str) -> Header:
    """The :class:`Header` of an open rasterio dataset."""
    epsg = ds.crs.to_epsg() if ds.crs else None
    return Header(url, (ds.height, ds.width), tuple(ds.transform)[:6], ds.dtypes[0], epsg)


def open_product(url: str, storage_options: dict[str, Any] | None = None) -> Any:
    """Open a product GeoTIFF (a context manager yielding a rasterio dataset); errors name the file."""
    import rasterio

    try:
        return _open(url, storage_options)
    except (rasterio.errors.RasterioError, OSError, ValueError) as exc:
        raise ProductError(f"{url}: cannot open GeoTIFF ({exc})") from exc


def read_window(ds: Any, url: str, row0: int, row1: int) -> np.ndarray:
    """Rows ``row0:row1`` of band 1 of an open product, in its own dtype; a corrupt strip names the file."""
    import rasterio
    from rasterio.windows import Window

    try:
        return ds.read(1, window=Window(0, row0, ds.width, row1 - row0))
    except (rasterio.errors.RasterioError, OSError, ValueError) as exc:
        raise ProductError(f"{url}: cannot read rows {row0}:{row1} ({exc})") from exc


# Value checks against LiCSAR's conventions (module docstring). Wrapped phase is float32 in [-pi, pi]; the
# tolerance covers float32's rounding of pi and products wrapped to (-pi, pi] in float64 then cast.
PHASE_TOL = 1e-3
# Unwrapped phase: any float, but |unw| beyond 1e4 rad (~44 m of LOS motion between two acquisitions at
# C-band, more than any co-seismic offset LiCSAR has unwrapped) is a scaled or garbage product.
UNW_MAX_RAD = 1e4
COH_TOL = 1e-3


def check_values(raw: np.ndarray, kind: str, url: str) -> None:
    """Refuse values that cannot be a LiCSAR product of ``kind`` (ProductValueError naming ``url``).

    - ``diff_pha``: a float dtype, finite values within [-pi, pi] (int16/uint8 or x100-scaled phase fail);
    - ``unw``: a float dtype, no infinities, |unw| <= :data:`UNW_MAX_RAD`;
    - ``cc``: uint8 (0..255, every value valid) or a float dtype within [0, 1] (a float 0..255 fails).
    NaN and LiCSAR's 0 are no data and always pass. Statics are not checked. Cost: a min and a max per
    block (NaN-aware only when the block holds NaN).
    """
    if kind not in ("diff_pha", "unw", "cc") or raw.size == 0:
        return
    dtype = raw.dtype
    if kind == "cc":
        if dtype == np.uint8:
            return
        if dtype.kind != "f":
            raise ProductValueError(f"{url}: coherence is {dtype}; LiCSAR's cc.tif is uint8 0..255 or float 0..1")
        lo, hi = _range(raw)
        if lo < -COH_TOL or hi > 1 + COH_TOL:
            raise ProductValueError(f"{url}: float coherence spans {lo:g}..{hi:g}; LiCSAR's float cc is 0..1")
        return
    if dtype.kind != "f":
        raise ProductValueError(f"{url}: {kind} is {dtype}; LiCSAR's {kind}.tif is float32 radians")
    lo, hi = _range(raw)
    if not (np.isfinite(lo) and np.isfinite(hi)) and not np.isnan(lo):
        raise ProductValueError(f"{url}: {kind} holds infinite values")
    if kind == "diff_pha" and (lo < -np.pi - PHASE_TOL or hi > np.pi + PHASE_TOL):
        raise ProductValueError(f"{url}: wrapped phase spans {lo:g}..{hi:g} rad, outside [-pi, pi] "
                                f"(scaled or not wrapped)")
    if kind == "unw" and max(-lo, hi) > UNW_MAX_RAD:
        raise ProductValueError(f"{url}: unwrapped phase reaches {max(-lo, hi):g} rad (> {UNW_MAX_RAD:g}: scaled?)")


def _range(raw: np.ndarray) -> tuple[float, float]:
    """(min, max) over non-NaN values ((nan, nan) when all are NaN); infinities are kept."""
    lo, hi = float(raw.min()), float(raw.max())
    if np.isnan(lo) or np.isnan(hi):
        finite = raw[~np.isnan(raw)]
        if finite.size == 0:
            return float("nan"), float("nan")
        lo, hi = float(finite.min()), float(finite.max())
    return lo, hi


def coherence_to_uint8(raw: np.ndarray) -> np.ndarray:
    """LiCSAR cc (uint8 0..255, or float32 0..1) as the cube stores it: uint8 k = round(255 c), 0 = no data.

    uint8 input is returned as is (lossless); float input is rounded to LiCSAR's own 1/255 steps, a valid
    coherence never becoming the no-data value 0."""
    if raw.dtype == np.uint8:
        return raw
    c = raw.astype("float32", copy=False)
    valid = np.isfinite(c) & (c > 0)
    return np.where(valid, np.clip(np.rint(np.where(valid, c, 0) * 255.0), 1, 255), 0).astype(np.uint8)


def to_cube_values(raw: np.ndarray, kind: str, nodata: float | None, dtype: Any = "float32") -> np.ndarray:
    """Product values -> cube values of ``dtype``: float32 with LiCSAR's no-data as NaN (phase/unw in rad,
    coherence 0..1, E/N/U unit components, hgt in m), or uint8 coherence (:func:`coherence_to_uint8`).

    Works in place on ``raw`` when it is already float32 (the caller's buffer is not kept)."""
    if np.dtype(dtype) == np.uint8:
        if kind != "cc":
            raise ProductError(f"only coherence is stored as uint8, not {kind!r}")
        return coherence_to_uint8(raw)
    if kind == "cc":
        out = raw.astype("float32")
        if raw.dtype == np.uint8:
            return np.where(raw == 0, np.nan, out / 255.0).astype("float32")
        return np.where((out <= 0) | ~np.isfinite(out), np.nan, np.clip(out, 0.0, 1.0)).astype("float32")
    out = raw.astype("float32", copy=False)
    if kind == "landmask":
        return out
    bad = raw == 0
    bad |= ~np.isfinite(out)
    if nodata is not None and not np.isnan(nodata):
        bad |= raw == nodata
    out[bad] = np.nan
    return out


def read_rows(url: str, row0: int, row1: int, kind: str, storage_options: dict[str, Any] | None = None,
              grid: tuple[tuple[int, int], tuple[float, ...]] | None = None) -> np.ndarray:
    """Read rows ``row0:row1`` of a product as float32 with LiCSAR's no-data turned into NaN.

    With ``grid`` = (shape, geotransform) the product's header is checked against the frame grid on the
    same open (GridMismatchError naming the file). Returns (rows, x) float32: phase/unw in rad, coherence
    0..1, E/N/U unit components, hgt in m.
    """
    import rasterio

    try:
        with open_product(url, storage_options) as ds:
            if grid is not None:
                check_grid(header_of(ds, url), *grid)
            raw = read_window(ds, url, row0, row1)
            nodata = ds.nodata
    except (rasterio.errors.RasterioError, OSError, ValueError) as exc:
        if isinstance(exc, ProductError):
            raise
        raise ProductError(f"{url}: cannot read rows {row0}:{row1} ({exc})") from exc
    return to_cube_values(raw, kind, nodata)
