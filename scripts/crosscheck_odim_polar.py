#!/usr/bin/env python3
"""Cross-check Raincast's gridding of ODIM_H5 polar volumes against h5py.

For every polar file given (``what/object`` PVOL or SCAN), this script

* runs ``raincast prep FILE --npy OUT`` (rain rate in mm/h before the rain
  threshold on the radar-centred 500 x 500 grid of 1 km cells, NaN = no data);
* reads the same file independently with h5py (libhdf5): the lowest sweep
  holding DBZH, raw x gain + offset;
* for every third row and column of the grid where Raincast has at least
  1 mm/h, finds the gate that cell should sample (azimuth from the grid
  offsets; slant range from the 4/3 Earth beam model at the sweep's
  elevation; ray i centred on (i + 1/2) x 360 / nrays, gate j covering
  rstart + [j, j + 1) x rscale) and converts its dBZ to mm/h with
  Marshall-Palmer (Z = 200 R^1.6, the prep's default for ODIM);

and requires agreement to 1e-3 relative on at least 99 % of those cells
(a cell on the boundary between two gates or rays may go either way).
A development tool, not a test dependency:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install h5py numpy
    cargo build --release -p raincast
    /tmp/venv/bin/python scripts/crosscheck_odim_polar.py FILE.h5 ...

Exit status 1 when any file disagrees.
"""

import argparse
import json
import math
import pathlib
import subprocess
import sys
import tempfile

import h5py
import numpy as np

EARTH_M = 6_371_000.0
KE = 4.0 / 3.0 * EARTH_M
CELL_M = 1000.0


def scalar(attrs, name, default=None):
    if name not in attrs:
        return default
    v = np.ravel(attrs[name])[0]
    return v.decode().strip("\0 ") if isinstance(v, bytes) else v


def lowest_dbzh(h):
    best = None
    for k in sorted(h, key=lambda k: int(k[7:]) if k[7:].isdigit() else 0):
        if not k.startswith("dataset"):
            continue
        el = float(scalar(h[k]["where"].attrs, "elangle"))
        for d in h[k]:
            if not d.startswith("data"):
                continue
            q = scalar(h[k][d]["what"].attrs, "quantity") or scalar(h[k]["what"].attrs, "quantity")
            if q == "DBZH" and (best is None or el < best[0]):
                best = (el, k, d)
    return best


def check(raincast, path, tmp):
    npy = pathlib.Path(tmp) / (path.name + ".npy")
    res = subprocess.run([raincast, "prep", str(path), "--npy", str(npy)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        return False, f"raincast prep failed: {res.stderr.strip()}"
    summary = json.loads(res.stdout)
    grid = np.load(npy)
    with h5py.File(path, "r") as h:
        el, k, d = lowest_dbzh(h)
        where, what = h[k]["where"].attrs, h[k][d]["what"].attrs
        raw = h[k][d]["data"][:]
        gain = float(scalar(what, "gain", scalar(h[k]["what"].attrs, "gain", 1.0)))
        offset = float(scalar(what, "offset", scalar(h[k]["what"].attrs, "offset", 0.0)))
        nodata = scalar(what, "nodata", scalar(h[k]["what"].attrs, "nodata"))
        undetect = scalar(what, "undetect", scalar(h[k]["what"].attrs, "undetect"))
        rscale = float(scalar(where, "rscale"))
        rstart = float(scalar(where, "rstart", 0.0)) * 1000.0
    nrays, nbins = raw.shape
    n = grid.shape[0]
    theta = math.radians(el)
    agree = total = 0
    for r in range(0, n, 3):
        for c in range(0, n, 3):
            v = grid[r, c]
            if not np.isfinite(v) or v < 1.0:
                continue
            x = (c + 0.5 - n / 2) * CELL_M
            y = (n / 2 - r - 0.5) * CELL_M
            phi = math.hypot(x, y) / KE
            slant = KE * math.sin(phi) / math.cos(theta + phi)
            az = math.degrees(math.atan2(x, y)) % 360.0
            ray = int(az / (360.0 / nrays)) % nrays
            gate = int((slant - rstart) / rscale)
            if not 0 <= gate < nbins or raw[ray, gate] in (nodata, undetect):
                continue
            rate = (10 ** ((raw[ray, gate] * gain + offset) / 10) / 200.0) ** (1 / 1.6)
            total += 1
            agree += abs(rate - v) <= 1e-3 * max(1.0, rate)
    share = agree / total if total else 0.0
    text = (f"{summary['source']} {summary['time']}: lowest DBZH sweep {el:g} deg, "
            f"{agree}/{total} sampled rain cells agree ({share:.3f})")
    return total > 0 and share >= 0.99, text


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=pathlib.Path)
    ap.add_argument("--raincast", default="target/release/raincast")
    args = ap.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for f in args.files:
            ok, text = check(args.raincast, f, tmp)
            print(("ok   " if ok else "FAIL ") + f"{f.name}: {text}")
            failed |= not ok
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
