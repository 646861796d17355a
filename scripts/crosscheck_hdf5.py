#!/usr/bin/env python3
"""Cross-check Raincast's ODIM_H5 and BOM netCDF decoders against the C libraries.

For every file given (or found below a folder given), this script

* runs ``raincast prep FILE --npy OUT`` (rain rate in mm/h before the
  threshold, float32, NaN = no data), and
* computes the same rate independently, with h5py (libhdf5) for ODIM_H5 and
  netCDF4-python (netcdf-c, CF masking and scaling) for BOM Rainfields,

then requires identical no-data masks and agreement to 1e-3 relative on the
finite cells. It is a development tool, not a test dependency:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install h5py netCDF4 numpy
    cargo build --release -p raincast
    /tmp/venv/bin/python scripts/crosscheck_hdf5.py ../shared/data/odim ../shared/data/bom

Exit status 1 when any file disagrees.
"""

import argparse
import pathlib
import subprocess
import sys
import tempfile
import time
from datetime import datetime

import numpy as np

RTOL = 1e-3
# Marshall-Palmer, Raincast's default Z-R for dBZ products.
ZR_A, ZR_B = 200.0, 1.6


def odim_rate(path):
    import h5py

    with h5py.File(path, "r") as f:
        names = sorted((k for k in f if k.startswith("dataset")), key=lambda k: int(k[7:]))
        for ds in names:
            ds_what = f[ds].get("what")
            datas = sorted((k for k in f[ds] if k.startswith("data") and k[4:].isdigit()),
                           key=lambda k: int(k[4:]))
            for d in datas:
                what = f[ds][d].get("what")

                def attr(name, default=None):
                    for group in (what, ds_what):
                        if group is not None and name in group.attrs:
                            v = group.attrs[name]
                            return v.decode() if isinstance(v, bytes) else v
                    return default

                quantity = attr("quantity")
                if isinstance(quantity, np.bytes_):
                    quantity = quantity.decode()
                if quantity not in ("RATE", "DBZH", "ACRR"):
                    continue
                raw = f[ds][d]["data"][()]
                gain = float(attr("gain", 1.0))
                offset = float(attr("offset", 0.0))
                nodata, undetect = attr("nodata"), attr("undetect")
                phys = raw.astype(np.float64) * gain + offset
                if quantity == "DBZH":
                    phys = (10.0 ** (phys / 10.0) / ZR_A) ** (1.0 / ZR_B)
                elif quantity == "ACRR":
                    def dt(date, tm):
                        s = attr(date)
                        t = attr(tm)
                        s = s.decode() if isinstance(s, bytes) else str(s)
                        t = t.decode() if isinstance(t, bytes) else str(t)
                        return datetime.strptime(s + t, "%Y%m%d%H%M%S")
                    secs = (dt("enddate", "endtime") - dt("startdate", "starttime")).total_seconds()
                    phys = phys * 3600.0 / secs
                if undetect is not None:
                    phys[raw == np.asarray(undetect).astype(raw.dtype)] = 0.0
                if nodata is not None:
                    phys[raw == np.asarray(nodata).astype(raw.dtype)] = np.nan
                if raw.dtype.kind == "f":
                    phys[np.isnan(raw)] = np.nan
                return phys
    raise ValueError(f"{path}: no RATE, DBZH or ACRR data")


def bom_rate(path):
    import netCDF4

    with netCDF4.Dataset(path) as nc:
        var = nc.variables["precipitation"]
        var.set_auto_maskandscale(True)
        mm = np.ma.filled(var[:].astype(np.float64), np.nan)
        secs = float(nc.variables["valid_time"][...]) - float(nc.variables["start_time"][...])
        mm = np.squeeze(mm)
        y = nc.variables[var.dimensions[-2]][:]
        if y[-1] > y[0]:  # south-up file: Raincast writes row 0 north
            mm = mm[::-1, :]
        return mm * 3600.0 / secs


def independent(path):
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"CDF") or "prcp-c" in path.name:
        return "bom", bom_rate(path)
    import h5py

    with h5py.File(path, "r") as f:
        is_bom = "precipitation" in f and "valid_time" in f
    return ("bom", bom_rate(path)) if is_bom else ("odim", odim_rate(path))


def compare(raincast, path, tmp):
    kind, ref = independent(path)
    out = pathlib.Path(tmp) / "rate.npy"
    t0 = time.perf_counter()
    subprocess.run([raincast, "prep", str(path), "--npy", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    ours = np.load(out)
    if ours.shape != ref.shape:
        return kind, False, f"shape {ours.shape} vs {ref.shape}", elapsed
    ours64 = ours.astype(np.float64)
    nan_ours, nan_ref = np.isnan(ours64), np.isnan(ref)
    mask_diff = int(np.count_nonzero(nan_ours != nan_ref))
    finite = ~nan_ref & ~nan_ours
    a, b = ours64[finite], ref[finite]
    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-12)
    rel[(a == 0) & (b == 0)] = 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    ok = mask_diff == 0 and max_rel <= RTOL
    detail = (f"cells={ours.size} nodata={int(nan_ref.sum())} mask_diff={mask_diff} "
              f"finite={int(finite.sum())} rain={int((b > 0).sum())} max_rel={max_rel:.2e} "
              f"max={float(b.max()) if b.size else 0:.3f}")
    return kind, ok, detail, elapsed


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", type=pathlib.Path)
    p.add_argument("--raincast", default="target/release/raincast",
                   help="path of the raincast binary (default: %(default)s)")
    args = p.parse_args()
    files = []
    for path in args.paths:
        files += sorted(q for q in path.rglob("*") if q.is_file()) if path.is_dir() else [path]
    failures = 0
    totals = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            try:
                kind, ok, detail, elapsed = compare(args.raincast, path, tmp)
            except Exception as e:  # report and carry on
                kind, ok, detail, elapsed = "?", False, f"error: {e}", 0.0
            failures += not ok
            n, fails = totals.get(kind, (0, 0))
            totals[kind] = (n + 1, fails + (not ok))
            print(f"{'ok  ' if ok else 'FAIL'} {kind:4} {path.name}: {detail} prep_s={elapsed:.3f}")
    for kind, (n, fails) in sorted(totals.items()):
        print(f"{kind}: {n - fails} passed, {fails} failed")
    print(f"{len(files) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
