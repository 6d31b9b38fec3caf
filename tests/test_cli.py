"""The CLI's start: building the parser imports no heavy library, ``--version``, loud broken sub-commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from insarcloud import cli

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "distributed", "dask", "xarray", "zarr", "rasterio", "matplotlib", "numpy", "scipy",
         "pandas", "s3fs")


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def test_building_the_parser_imports_no_heavy_library():
    out = _run("import sys, json\nfrom insarcloud.cli import build_parser, COMMAND_MODULES\n"
               "p = build_parser()\n"
               "subs = sorted(p._subparsers._group_actions[0].choices)\n"
               f"print(json.dumps({{'heavy': [m for m in {HEAVY!r} if m in sys.modules], 'subs': subs,"
               " 'modules': [m for m in COMMAND_MODULES if m in sys.modules]}))")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["heavy"] == []
    assert len(res["modules"]) == len(cli.COMMAND_MODULES)  # every sub-command module was imported ...
    for name in ("ingest", "qc", "quality", "unwrap", "invert", "noise", "forecast", "run", "plot"):
        assert name in res["subs"]  # ... and registered its commands


def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"insarcloud {version('insarcloud')}"


def test_a_broken_command_module_is_a_loud_error(tmp_path, monkeypatch):
    (tmp_path / "broken_insar_cmd.py").write_text("import no_such_package_for_insarcloud\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "broken_insar_cmd"))
    with pytest.raises(cli.CommandModuleError, match="broken_insar_cmd.*no_such_package_for_insarcloud"):
        cli.build_parser(cli.COMMAND_MODULES)


def test_main_reports_a_broken_module_by_name(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_insar_cmd2.py").write_text("raise ImportError('compiled extension missing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("insarcloud.io.command", "broken_insar_cmd2"))
    original = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: original(cli.COMMAND_MODULES))
    assert cli.main(["info", "x.zarr"]) == 3
    err = capsys.readouterr().err
    assert "broken_insar_cmd2" in err and "compiled extension missing" in err


def test_help_lists_the_commands_in_a_subprocess():
    out = subprocess.run([sys.executable, "-m", "insarcloud.cli", "--help"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120, check=False)
    assert out.returncode == 0 and "plot" in out.stdout and "--version" in out.stdout
