"""Quicklooks: each stage's PNGs from a small simulated cube, listed in the group, colours that mean something."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from insarcloud import io
from insarcloud.plot.figures import LABEL_STYLE, Panel, maps_figure, network_figure, png_bytes
from insarcloud.plot.quicklooks import default_group, write_quicklooks

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk; fails on anything that is not a PNG."""
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> str:
    """A 36 x 32 px, 10-epoch simulated frame with the qc, quality, ts_coherence and noise groups."""
    import dask

    from insarcloud.invert.dask_ops import invert_cube
    from insarcloud.noise.dask_ops import noise_cube
    from insarcloud.qc.dask_ops import run_qc
    from insarcloud.simulate import simulate_frame

    sim = simulate_frame(shape=(36, 32), n_epochs=10, seed=1, min_neighbours=3, max_neighbours=3)
    ds = io.make_frame_dataset(frame=sim.frame_id, pairs=sim.pairs, lat=sim.lat, lon=sim.lon, phase=sim.phase,
                               coh=sim.coherence_est, unw=sim.unw)
    ds["bperp"] = ("date", np.asarray(sim.network.bperp, dtype="float32"))
    url = str(tmp_path_factory.mktemp("plot") / "cube.zarr")
    io.write_new_cube(ds, url, chunk=16)
    with dask.config.set(scheduler="synchronous"):
        run_qc(url)
        invert_cube(url, weights="coherence")
        noise_cube(url, ts_group="ts_coherence", classes="tiles", class_size=64)
        q = io.open_cube(url)["coh"].rename("quality").to_dataset()  # quality group as qc.serve lays it out
        io.write_stage_output(q, url, "quality", stage="quality", params={"test": 1})
    return url


@pytest.mark.parametrize(("stage", "group", "names"), [
    ("qc", "qc", ["network", "coherence_matrix", "loop_closure"]),
    ("invert", "ts_coherence", ["velocity", "precision"]),
    ("noise", "noise", ["noise", "noise_model"]),
])
def test_stage_writes_its_quicklooks_beside_the_group(cube, stage, group, names):
    attrs = io.open_cube(cube, group=group).attrs  # the stage itself drew them (hook after completion)
    assert attrs["quicklooks"] == [f"quicklooks/{n}.png" for n in names]
    for rel in attrs["quicklooks"]:
        w, h = png_size(io.storage.read_bytes(io.join(cube, group, rel)))
        assert w >= 400 and h >= 300


def test_plot_remakes_quality_quicklooks_and_sizes_are_figsize_times_dpi(cube):
    assert default_group(cube, "quality") == "quality"
    paths = write_quicklooks(cube, "quality", "quality", dpi=50)
    assert paths == ["quicklooks/quality.png"]
    assert io.open_cube(cube, group="quality").attrs["quicklooks"] == paths
    # two panels of 4.2 x 3.6 in at 50 dpi
    assert png_size(io.storage.read_bytes(io.join(cube, "quality", paths[0]))) == (420, 180)
    assert io.list_groups(cube) == ["noise", "qc", "quality", "ts_coherence"]  # the PNG folder is no stage group


def test_plot_command_to_a_local_folder(cube, tmp_path, capsys):
    from insarcloud.cli import main

    assert main(["plot", cube, "--stage", "ts", "--out", str(tmp_path)]) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["ts_coherence_precision.png", "ts_coherence_velocity.png"]
    assert str(tmp_path / "ts_coherence_velocity.png") in capsys.readouterr().out
    assert main(["plot", cube, "--stage", "qc", "--group", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_network_colours_follow_the_labels():
    dates = np.datetime64("2020-01-01", "ns") + np.arange(5) * np.timedelta64(12, "D")
    prim = dates[[0, 0, 1, 2, 3]]
    sec = dates[[1, 2, 3, 4, 4]]
    coh = np.array([0.9, 0.2, 0.5, 0.7, 0.1])
    classes = ["good", "bad", "uncertain", "good", "bad"]
    fig = network_figure(prim, sec, dates, np.array([0.0, 30, -20, 10, 5]), coh, classes)
    by_coh, by_label = fig.axes[0], fig.axes[1]
    lines = {ln.get_label().split(" ")[0]: ln for ln in by_label.get_lines() if not ln.get_label().startswith("_")}
    assert set(lines) == {"good", "bad", "uncertain"}
    for name, line in lines.items():
        colour, style = LABEL_STYLE[name]
        import matplotlib.colors as mc

        assert mc.to_hex(line.get_color()) == mc.to_hex(colour) and line.get_linestyle() == style
        assert line.get_label() == f"{name} ({classes.count(name)})"
        assert np.isfinite(line.get_xdata()).sum() == 2 * classes.count(name)  # two ends per pair
    coll = by_coh.collections[0]
    assert np.allclose(coll.get_array(), coh)  # colour = mean coherence of each pair, in pair order
    assert by_coh.get_ylabel() == "perpendicular baseline (m)"
    png_bytes(fig)


def test_velocity_map_marks_reference_and_mask():
    vals = np.arange(20.0).reshape(4, 5)
    mask = np.zeros((4, 5), bool)
    mask[0, 0] = True
    fig = maps_figure([Panel(vals, "v", "mm/yr", "RdBu_r", True, mask, (10.002, 0.999))],
                      1.0 - np.arange(4) * 0.001, 10.0 + np.arange(5) * 0.001)
    ax = fig.axes[0]
    assert len(ax.get_images()) == 2  # the map and the grey mask over it
    ref = [ln for ln in ax.get_lines() if ln.get_label() == "reference point"]
    assert len(ref) == 1 and ref[0].get_xdata()[0] == 10.002 and ref[0].get_ydata()[0] == 0.999
    lo, hi = ax.get_images()[0].get_clim()
    assert lo == -hi  # signed velocity: symmetric colours
    png_bytes(fig)
