"""The generated config template and the example configs load into valid configs."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from insarcloud.config import AreaJobConfig, load_config, parse_config
from insarcloud.config_template import EXAMPLE_VALUES, template_yaml

ROOT = Path(__file__).resolve().parents[1]


def _leaf_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        args = typing.get_args(ann) if typing.get_origin(ann) is not list else ()
        subs = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if subs and info.default is not None:
            out += _leaf_paths(subs[0], f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def test_template_round_trips_to_the_defaults() -> None:
    text = template_yaml()
    data = yaml.safe_load(text)
    cfg = parse_config(data, "template")
    required = {"area": {"name": EXAMPLE_VALUES["area.name"], "bbox": EXAMPLE_VALUES["area.bbox"]},
                "frames": EXAMPLE_VALUES["frames"], "source_url": EXAMPLE_VALUES["source_url"],
                "output_url": EXAMPLE_VALUES["output_url"]}
    assert cfg == AreaJobConfig.model_validate(required)
    # and the template is the whole model: every key present, in the YAML and with a comment above it
    lines = text.splitlines()
    for path in _leaf_paths(AreaJobConfig):
        node = data
        for part in path.split("."):
            assert part in node, f"template lacks {path}"
            node = node[part]
        key = path.rsplit(".", 1)[-1]
        idx = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{key}:"))
        assert lines[idx - 1].strip().startswith("#"), f"{path} has no comment"


def test_template_states_choices_bounds_and_units() -> None:
    text = template_yaml()
    assert "one of: none, coherence, quality, closure, quality_closure; default: quality_closure" in text
    assert "one of: ls, wls, pcua, rpua, chebyshev, snaphu, multiscale" in text
    assert ">= 16; <= 16384; default: 512" in text  # ingest.chunk_yx (insarcloud ingest --chunk)
    assert "Loop-closure RMS threshold (LiCSBAS step 12), rad." in text
    assert "#   lon: Longitude, degrees east.; >= -180.0; <= 180.0" in text  # report.points items


def test_template_follows_the_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated, not copied: a changed default in the model changes the template."""
    from insarcloud import config

    field = config.QcParams.model_fields["loop_thre"]
    monkeypatch.setattr(field, "default", 2.25)
    assert "loop_thre: 2.25" in template_yaml()


@pytest.mark.parametrize("name", ["area.yaml", "area-onprem.yaml"])
def test_examples_are_valid(name: str) -> None:
    cfg = load_config(ROOT / "examples" / name)
    assert cfg.frames and cfg.ordered_stages()
    if name == "area-onprem.yaml":
        opts = cfg.output_storage_options()
        assert opts["endpoint_url"].startswith("http://minio")
        assert opts["config_kwargs"] == {"s3": {"addressing_style": "path"}}


def test_config_command(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "insarcloud.cli", "config", "--template"], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    assert out.stdout == template_yaml()
    bad = tmp_path / "bad.yaml"
    bad.write_text(out.stdout.replace("window: 5", "window: 4").replace("dpi: 120", "dpy: 120"))
    res = subprocess.run([sys.executable, "-m", "insarcloud.cli", "config", "--check", str(bad)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2
    assert "params.qc.window" in res.stderr and "report.dpy" in res.stderr
    ok = subprocess.run([sys.executable, "-m", "insarcloud.cli", "config", "--check", str(ROOT / "examples/area.yaml")],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "valid" in ok.stdout
