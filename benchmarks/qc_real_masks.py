"""QC of a real LiCSAR frame with and without its landmask (issue 21): LiCSBAS step 11/12 over land, rule labels.

    python benchmarks/qc_real_masks.py /work/shared/data/licsar/106A_09048_000909 \
        --json bench-output/qc_real_masks.json --png docs/img/real_data_qc.png

Reads the frame's ``diff_pha``/``cc`` GeoTIFFs and ``metadata/*.geo.landmask.tif`` with the ingest's own
value conversion (``insarcloud.io.licsar.to_cube_values``) and runs the whole-array QC reference
(``insarcloud.qc.products.frame_qc``, the numbers the Dask path reproduces exactly) twice: without the mask
(every pixel with data, as before issue 21) and with water (landmask 0) as no data.
"""

from __future__ import annotations

import argparse
import glob
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import write_json  # noqa: E402


def read_frame(frame_dir: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    import rasterio

    from insarcloud.io.licsar import to_cube_values

    def rd(path: str, kind: str) -> np.ndarray:
        with rasterio.open(path) as ds:
            return to_cube_values(ds.read(1), kind, ds.nodata)

    pairs = sorted(Path(p).name for p in glob.glob(f"{frame_dir}/interferograms/*_*"))
    ph = np.stack([rd(f"{frame_dir}/interferograms/{p}/{p}.geo.diff_pha.tif", "diff_pha") for p in pairs])
    cc = np.stack([rd(f"{frame_dir}/interferograms/{p}/{p}.geo.cc.tif", "cc") for p in pairs])
    lm = rd(glob.glob(f"{frame_dir}/metadata/*.geo.landmask.tif")[0], "landmask")
    return pairs, ph, cc, lm


def summary(r: Any, pairs: list[str]) -> dict[str, Any]:
    from insarcloud.qc.labels import LABEL_NAMES

    return {p: {"step11_coverage": float(r.step11.coverage[i]), "step11_coh_avg": float(r.step11.coh_avg[i]),
                "step11_bad": bool(r.step11.bad[i]), "step12_bad": bool(r.step12.bad[i]),
                "n_good_loops": int(r.step12.n_good_loops[i]), "n_bad_loops": int(r.step12.n_bad_loops[i]),
                "ifg_label": LABEL_NAMES[int(r.ifg.label[i])], "frac_good": float(r.ifg.frac_good[i]),
                "frac_bad": float(r.ifg.frac_bad[i]), "frac_uncertain": float(r.ifg.frac_uncertain[i])}
            for i, p in enumerate(pairs)}


def main(argv: list[str] | None = None) -> int:
    from insarcloud.qc.products import frame_qc

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("frame_dir")
    ap.add_argument("--json", required=True)
    ap.add_argument("--png", default=None)
    a = ap.parse_args(argv)
    pairs, ph, cc, lm = read_frame(a.frame_dir)
    out: dict[str, Any] = {"frame": Path(a.frame_dir).name, "shape": list(ph.shape),
                           "land_fraction": float((lm == 1).mean())}
    res = {}
    for name, mask in (("no_mask", None), ("landmask", lm)):
        t0 = time.process_time()
        res[name] = frame_qc(pairs, ph, cc, landmask=mask)
        out[name] = summary(res[name], pairs)
        out[name + "_cpu_s"] = time.process_time() - t0
    write_json(a.json, out)
    print(f"{out['frame']}: {out['shape']}, land {out['land_fraction']:.3f}")
    print(f"{'pair':20s} {'mask':9s} {'cov':>5s} {'coh':>5s} s11 s12 {'good':>5s} {'bad':>5s} label")
    for p in pairs:
        for name in ("no_mask", "landmask"):
            s = out[name][p]
            print(f"{p:20s} {name:9s} {s['step11_coverage']:5.2f} {s['step11_coh_avg']:5.2f} "
                  f"{'bad' if s['step11_bad'] else 'ok ':3s} {'bad' if s['step12_bad'] else 'ok ':3s} "
                  f"{s['frac_good']:5.2f} {s['frac_bad']:5.2f} {s['ifg_label']}")
    if a.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import ListedColormap

        fig, ax = plt.subplots(1, 3, figsize=(13, 4.2))
        cmap = ListedColormap(["#2ca02c", "#d62728", "#ffbf00", "#dddddd"])

        def cls(lab: np.ndarray) -> np.ndarray:
            return np.select([lab == 0, lab == 1, lab == 2], [0, 1, 2], 3)

        for k, name in enumerate(("no_mask", "landmask")):
            ax[k].imshow(cls(res[name].pixels.label[0])[::4, ::4], cmap=cmap, vmin=0, vmax=3,
                         interpolation="nearest")
            ax[k].set_title(f"{pairs[0]} labels, {name.replace('_', ' ')}\n(green good, red bad, "
                            "amber uncertain, grey no data)", fontsize=8)
            ax[k].axis("off")
        x = np.arange(len(pairs))
        for off, name, col in ((-0.2, "no_mask", "#999999"), (0.2, "landmask", "#1f77b4")):
            ax[2].bar(x + off, [out[name][p]["frac_bad"] for p in pairs], 0.4, color=col,
                      label=f"{name.replace('_', ' ')}: share of valid pixels bad")
        ax[2].axhline(0.5, color="k", lw=0.8, ls="--")
        ax[2].text(-0.4, 0.52, "ifg bad above 0.5", fontsize=7)
        ax[2].set_xticks(x, [p.replace("_", "\n") for p in pairs], fontsize=6)
        ax[2].set_ylim(0, 1)
        ax[2].legend(fontsize=7)
        ax[2].set_title("per interferogram (steps 11 and 12 pass in both)", fontsize=8)
        fig.tight_layout()
        Path(a.png).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(a.png, dpi=90)
        print(f"figure: {a.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
