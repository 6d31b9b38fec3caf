"""insarcloud.config: the area-job config validates, names what is wrong, and round-trips through YAML."""

from __future__ import annotations

import re
from pathlib import Path

import fsspec
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from insarcloud.config import (
    ENV_DASK_SCHEDULER,
    ENV_RAY_ADDRESS,
    STAGE_ORDER,
    AreaJobConfig,
    EnginesConfig,
    StorageConfig,
    dump_config,
    frames_intersecting,
    load_config,
    parse_config,
    parse_poly_txt,
    polygon_intersects_bbox,
)
from insarcloud.errors import ConfigError

POLY = Path(__file__).resolve().parent / "data" / "106A_09048_000909-poly.txt"  # real LiCSAR outline

BASE = {
    "area": {"name": "galapagos", "bbox": [-92.5, -1.5, -90.5, 0.5]},
    "frames": ["106A_09048_000909"],
    "source_url": "s3://licsar",
    "output_url": "s3://results/insar",
}

FULL = {
    **BASE,
    "version": 1,
    "storage": {"endpoint_url": "http://127.0.0.1:9000", "region": "us-east-1", "addressing_style": "path"},
    "source_storage": {"anon": True},
    "stages": ["mosaic", "ingest", "invert", "unwrap"],
    "params": {
        "ingest": {"chunk_yx": 256},
        "qc": {"window": 7, "loop_thre": 1.2},
        "quality": {"tile": 128, "overlap": 32, "num_actors": 1},
        "unwrap": {"method": "rpua", "tile": 512, "overlap": 32},
        "invert": {"weights": "coherence", "reference": [-91.0, -0.5]},
        "noise": {"sigma_model": "full", "functional": "linear"},
        "forecast": {"model": "bigru", "factors_url": "s3://env/{frame}.zarr", "horizon": 10},
        "mosaic": {"ramp": "linear", "gnss_csv": "s3://results/gnss.csv", "reference_box": [-91.2, -0.9, -91.0, -0.7]},
    },
    "engines": {"dask_scheduler": "tcp://sched:8786", "ray_address": "ray://head:10001", "local_workers": 3},
    "report": {"points": [{"name": "Sierra Negra", "lon": -91.13, "lat": -0.83}], "dpi": 150},
    "max_failed_frames": 2,
}


def test_round_trip_full_and_minimal(tmp_path):
    for data in (BASE, FULL):
        cfg = parse_config(data)
        text = dump_config(cfg)
        again = parse_config(text)
        assert again == cfg
        assert dump_config(again) == text  # a fixed point
        path = tmp_path / "area.yaml"
        path.write_text(cfg.to_yaml())
        assert load_config(path) == cfg
        assert load_config(f"file://{path}") == cfg
    # exclude_defaults keeps the file short and still means the same config
    short = dump_config(parse_config(FULL), exclude_defaults=True)
    assert "local_threads_per_worker" not in short
    assert parse_config(short) == parse_config(FULL)


def test_load_config_from_an_fsspec_url():
    with fsspec.open("memory://insarcloud-tests/area.yaml", "w") as f:
        f.write(yaml.safe_dump(FULL))
    assert load_config("memory://insarcloud-tests/area.yaml") == parse_config(FULL)
    with pytest.raises(ConfigError, match="cannot read config memory://insarcloud-tests/missing.yaml"):
        load_config("memory://insarcloud-tests/missing.yaml")


def test_derived_values():
    cfg = parse_config(FULL)
    assert cfg.ordered_stages() == ["ingest", "unwrap", "invert", "mosaic"]
    assert cfg.cube_url("106A_09048_000909") == "s3://results/insar/cubes/106A_09048_000909.zarr"
    assert cfg.area_url() == "s3://results/insar/areas/galapagos.zarr"
    assert cfg.output_storage_options() == {
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "us-east-1"},
        "config_kwargs": {"s3": {"addressing_style": "path"}},
    }
    assert cfg.source_storage_options() == {"anon": True}
    assert parse_config(BASE).source_storage_options() == {}
    assert parse_config(BASE).stages == [s for s in STAGE_ORDER if s != "unwrap"]
    forecast = parse_config(FULL).params.forecast
    assert forecast.factors_url.format(frame="F1", output_url="s3://o") == "s3://env/F1.zarr"


def test_stage_options_match_the_stages():
    # The config's option names are the stages' own: a renamed option in a stage fails here, not mid-job.
    import argparse
    import typing

    from insarcloud.config import (
        ForecastModel,
        InversionWeights,
        NoiseAlphaMethod,
        NoiseClasses,
        NoiseFlicker,
        NoiseFunctional,
        NoiseSigmaModel,
        QcParams,
        QualityParams,
        UnwrapMethod,
    )
    from insarcloud.invert.weights import WeightMode
    from insarcloud.noise.command import add_parser
    from insarcloud.qc.config import QCParams
    from insarcloud.qc.serve import ServeParams
    from insarcloud.unwrap._common import Method

    assert typing.get_args(UnwrapMethod) == typing.get_args(Method)
    assert typing.get_args(InversionWeights) == typing.get_args(WeightMode)
    assert set(QcParams.model_fields) <= set(QCParams.model_fields)
    for name, field in QcParams.model_fields.items():
        assert field.default == QCParams.model_fields[name].default, name
    assert set(QualityParams.model_fields) - {"num_actors"} <= set(ServeParams.model_fields)
    sub = argparse.ArgumentParser().add_subparsers()
    add_parser(sub)
    noise = next(iter(sub.choices.values()))
    choices = {a.dest: tuple(a.choices) for a in noise._actions if a.choices}
    assert set(typing.get_args(NoiseClasses)) == set(choices["classes"])
    assert set(typing.get_args(NoiseSigmaModel)) == set(choices["sigma_model"])
    assert set(typing.get_args(NoiseFlicker)) == set(choices["flicker"])
    assert set(typing.get_args(NoiseAlphaMethod)) == set(choices["alpha_method"])
    assert set(typing.get_args(NoiseFunctional)) == set(choices["functional"])
    models = Path(__file__).resolve().parents[2] / "insarcloud" / "forecast" / "names.py"
    text = models.read_text()  # read, not imported: importing torch here would cost seconds
    block = text[text.index("ModelName = Literal[") : text.index("]", text.index("ModelName = Literal["))]
    assert set(typing.get_args(ForecastModel)) == set(re.findall(r'"([a-z0-9_]+)"', block))


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"stagez": ["qc"]}, r"unknown key 'stagez'"),
        ({"params": {"invert": {"weigths": "none"}}}, r"unknown key 'params\.invert\.weigths'"),
        ({"params": {"invert": {"weights": "qualty"}}}, r"key 'params\.invert\.weights'.*'quality'.*got str 'qualty'"),
        ({"params": {"ingest": {"chunk_yx": "big"}}}, r"key 'params\.ingest\.chunk_yx'.*integer"),
        ({"params": {"ingest": {"chunk_yx": 10}}}, r"key 'params\.ingest\.chunk_yx'.*greater than or equal to 16"),
        ({"params": {"unwrap": {"tile": 128, "overlap": 64}}}, r"key 'params\.unwrap'.*overlap 64"),
        ({"params": {"noise": {"sigma_model": "spherical"}}}, r"key 'params\.noise\.sigma_model'.*'gaussian'"),
        ({"params": {"qc": {"window": 4}}}, r"key 'params\.qc\.window'.*odd"),
        ({"params": {"forecast": {"factors_url": "s3://x/{tile}.zarr"}}}, r"key 'params\.forecast\.factors_url'"),
        ({"params": {"forecast": {"model": "gler_bigrunet"}}}, r"key 'params\.forecast\.model'"),
        ({"frames": ["106A_09048_000909", "bad-frame"]}, r"key 'frames\[1\]'.*pattern.*got str 'bad-frame'"),
        ({"frames": ["106A_09048_000909"] * 2}, r"key 'frames'.*repeated"),
        ({"frame_index_url": "s3://licsar"}, r"exactly one of 'frames'.*'frame_index_url'"),
        ({"area": {"name": "Bad Name", "bbox": [0, 0, 1, 1]}}, r"key 'area\.name'"),
        ({"area": {"name": "a", "bbox": [10, 0, 5, 1]}}, r"key 'area\.bbox'.*lon_min 10\.0 must be < lon_max 5\.0"),
        ({"area": {"name": "a", "bbox": [0, 0, 1]}}, r"key 'area\.bbox'"),
        ({"area": {"name": "a", "bbox": [0, -95, 1, 1]}}, r"key 'area\.bbox\[1\]'.*-90"),
        ({"output_url": "https://example.org/out"}, r"key 'output_url'.*scheme 'https'"),
        ({"source_url": "ftp://x/y"}, r"key 'source_url'.*scheme 'ftp'"),
        ({"stages": ["qc", "qc"]}, r"key 'stages'.*repeated"),
        ({"stages": ["qc", "unwarp"]}, r"key 'stages\[1\]'"),
        ({"stages": []}, r"key 'stages'"),
        ({"engines": {"dask_scheduler": "localhost:8786"}}, r"key 'engines\.dask_scheduler'"),
        ({"engines": {"ray_address": "http://head:10001"}}, r"key 'engines\.ray_address'"),
        ({"engines": {"local_workers": 0}}, r"key 'engines\.local_workers'"),
        ({"report": {"points": [{"name": "far", "lon": 10.0, "lat": 10.0}]}}, r"report points outside area\.bbox"),
        ({"version": 2}, r"key 'version'"),
        ({"storage": {"secret_access_key": "x"}}, r"key 'storage'.*credential key 'secret_access_key'.*environment"),
        ({"storage": {"key": "x"}}, r"credential key 'key'"),
        ({"storage": {"endpoint_url": "minio:9000"}}, r"key 'storage\.endpoint_url'.*scheme"),
    ],
)
def test_bad_key_or_type_is_a_config_error_naming_it(patch, message):
    data = {k: v for k, v in BASE.items()}
    data.update(patch)
    with pytest.raises(ConfigError, match=r"(?s)invalid config area\.yaml:.*" + message):
        parse_config(data, source="area.yaml")


def test_missing_keys_and_bad_documents(tmp_path):
    with pytest.raises(ConfigError, match=r"missing key 'output_url'"):
        parse_config({k: v for k, v in BASE.items() if k != "output_url"})
    with pytest.raises(ConfigError, match=r"missing key 'area\.bbox'"):
        parse_config({**BASE, "area": {"name": "a"}})
    bad = tmp_path / "broken.yaml"
    bad.write_text("area:\n  name: a\n  bbox: [0, 0, 1, 1\n")
    with pytest.raises(ConfigError, match=r"invalid YAML in .*broken\.yaml line \d+"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping, got list"):
        load_config(lst)
    with pytest.raises(ConfigError, match=r"cannot read config .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_every_field_documents_itself():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            ann = field.annotation
            for sub in getattr(ann, "__args__", ()) + (ann,):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    walk(sub)
        assert model.model_config["extra"] == "forbid", model.__name__

    walk(AreaJobConfig)


def test_configs_are_immutable():
    cfg = parse_config(BASE)
    with pytest.raises(Exception, match="frozen"):
        cfg.output_url = "s3://elsewhere"


def test_engine_addresses_config_then_env_then_local():
    env = {ENV_DASK_SCHEDULER: "tcp://10.0.0.5:8786", ENV_RAY_ADDRESS: "ray://10.0.0.6:10001"}
    none = EnginesConfig()
    assert none.resolved_dask_scheduler(env={}) is None and none.resolved_ray_address(env={}) is None
    assert none.resolved_dask_scheduler(env=env) == "tcp://10.0.0.5:8786"
    assert none.resolved_ray_address(env=env) == "ray://10.0.0.6:10001"
    assert none.resolved_dask_scheduler(env={ENV_DASK_SCHEDULER: "  "}) is None
    given_ = EnginesConfig(dask_scheduler="tcp://sched:8786", ray_address="ray://head:10001")
    assert given_.resolved_dask_scheduler(env=env) == "tcp://sched:8786"
    assert given_.resolved_ray_address(env=env) == "ray://head:10001"


def test_storage_options_and_env_fallback():
    assert StorageConfig().storage_options() == {}  # everything from the environment
    storage = StorageConfig(endpoint_url="https://rgw.example:7480", verify_tls=False, requester_pays=True)
    opts = storage.storage_options()
    assert opts == {
        "endpoint_url": "https://rgw.example:7480",
        "requester_pays": True,
        "client_kwargs": {"verify": False},
    }


# --------------------------------------------------------------------------------------------------
# Frame index: LiCSAR *-poly.txt


def test_real_licsar_polygon_selects_its_frame():
    poly = parse_poly_txt(POLY.read_text(), source=str(POLY))
    assert poly.shape == (9, 2)
    assert poly[:, 0].min() == pytest.approx(-92.39942779254802) and poly[:, 1].max() == pytest.approx(0.455924633846)
    polys = {"106A_09048_000909": poly, "999D_00000_000000": poly + [40.0, 0.0]}
    assert frames_intersecting(polys, (-91.5, -1.0, -91.0, -0.5)) == ["106A_09048_000909"]  # box inside
    assert frames_intersecting(polys, (-100.0, -10.0, 0.0, 10.0)) == ["106A_09048_000909", "999D_00000_000000"]
    assert frames_intersecting(polys, (-92.5, 0.35, -92.3, 0.5)) == []  # inside the hull's bbox, outside it
    assert frames_intersecting(polys.items(), (0.0, 0.0, 1.0, 1.0)) == []


def test_polygon_bbox_edge_cases():
    diamond = np.array([[0.0, -2.0], [2.0, 0.0], [0.0, 2.0], [-2.0, 0.0]])
    assert polygon_intersects_bbox(diamond, (-0.1, -0.1, 0.1, 0.1))  # box inside, no vertex in box
    assert not polygon_intersects_bbox(diamond, (1.2, 1.2, 3.0, 3.0))  # in the bboxes' overlap, outside
    # a thin box crossing the diamond: no vertex of either inside the other, only edges cross
    assert polygon_intersects_bbox(diamond, (-3.0, -0.1, 3.0, 0.1))
    assert polygon_intersects_bbox(diamond, (2.0, -1.0, 3.0, 1.0))  # touches at a vertex


@settings(max_examples=40, deadline=None)
@given(
    cx=st.floats(-170, 170),
    cy=st.floats(-80, 80),
    r=st.floats(0.01, 5),
    bx=st.floats(-175, 175),
    by=st.floats(-85, 85),
    w=st.floats(0.01, 5),
    h=st.floats(0.01, 5),
)
def test_polygon_intersection_matches_dense_sampling(cx, cy, r, bx, by, w, h):
    # brute force: sample the polygon (a convex octagon) densely and see whether any sample lands in the box
    ang = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    poly = np.c_[cx + r * np.cos(ang), cy + r * np.sin(ang)]
    bbox = (bx, by, bx + w, by + h)
    u = np.linspace(0, 1, 31)
    pts = [
        poly[0] + a * (poly[i] - poly[0]) + b * (poly[i + 1] - poly[i])
        for i in range(1, 7)
        for a in u
        for b in u
        if b <= a
    ]
    pts = np.array(pts)
    inside = ((pts[:, 0] >= bbox[0]) & (pts[:, 0] <= bbox[2]) & (pts[:, 1] >= bbox[1]) & (pts[:, 1] <= bbox[3])).any()
    got = polygon_intersects_bbox(poly, bbox)
    if inside:
        assert got  # sampling finds only true intersections
    elif got:
        # a true intersection the sampling missed must be a sliver thinner than the sample spacing
        step = r * 2 * np.pi / 8 / 30
        grow = (bbox[0] - 2 * step, bbox[1] - 2 * step, bbox[2] + 2 * step, bbox[3] + 2 * step)
        assert ((pts[:, 0] >= grow[0]) & (pts[:, 0] <= grow[2]) & (pts[:, 1] >= grow[1]) & (pts[:, 1] <= grow[3])).any()


def test_bad_poly_files_name_the_line():
    with pytest.raises(ConfigError, match=r"x-poly\.txt line 2: expected 'lon lat'"):
        parse_poly_txt("1 2\n3 four\n5 6\n", source="x-poly.txt")
    with pytest.raises(ConfigError, match="at least 3 vertices, got 2"):
        parse_poly_txt("1 2\n3 4\n", source="x-poly.txt")


def test_credential_keys_are_found_at_any_depth_and_named_by_path():
    from insarcloud.config import credential_key_paths, credential_key_pattern

    tree = {"a": {"b": [{"c": 1}, {"Password": "x"}]}, "token": "t", "keynote": 1, "params": {"x": {"KEY": 2}}}
    assert credential_key_paths(tree) == ["a.b[1].Password", "token", "params.x.KEY"]
    assert credential_key_paths({"storage": {"region": "x"}, "frames": ["a"]}) == []
    pat = re.compile(credential_key_pattern())
    assert pat.match("aws_SECRET_access_key") and pat.match("Token") and not pat.match("keynote")
