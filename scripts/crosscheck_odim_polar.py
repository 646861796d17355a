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

import math

import h5py
import numpy as np

from crosscheck_polar import agrees, main, prep, rain_cells, verdict


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


def check(raincast, path, tmp, _args):
    summary, grid = prep(raincast, path, tmp)
    if grid is None:
        return False, summary
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
    agree = total = 0
    for v, slant, az in rain_cells(grid, el, step=3):
        ray = int(az / (360.0 / nrays)) % nrays
        gate = int((slant - rstart) / rscale)
        if not 0 <= gate < nbins or raw[ray, gate] in (nodata, undetect):
            continue
        rate = (10 ** ((raw[ray, gate] * gain + offset) / 10) / 200.0) ** (1 / 1.6)
        total += 1
        agree += agrees(rate, v)
    return verdict(summary, f"lowest DBZH sweep {el:g} deg", agree, total)


if __name__ == "__main__":
    main(__doc__, check)
