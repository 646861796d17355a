#!/usr/bin/env python3
"""Cross-check Raincast's gridding of NEXRAD Level II volumes against MetPy.

For every Archive II volume given (message 31 or legacy message 1, whole-file
gzip/bzip2 or not), this script

* runs ``raincast prep FILE --npy OUT`` (rain rate in mm/h before the rain
  threshold on the radar-centred 500 x 500 grid of 1 km cells, NaN = no
  data), with ``--site-location`` when one is given for a legacy volume of a
  site the registry does not list;
* reads the same file independently with MetPy's ``Level2File``: the sweep
  with the lowest mean elevation that holds REF (the first of two within
  0.2 deg: a split cut's surveillance scan), its radials' azimuths and dBZ;
* for every cell of the grid where Raincast has at least 1 mm/h, finds the
  gate that cell should sample (azimuth from the grid offsets, the radial whose centre azimuth is nearest the centre of the
  cell's 0.1 deg azimuth bin; slant range from the 4/3 Earth beam model at
  the sweep's mean elevation rounded to 0.1 deg, the gate whose centre is
  nearest, MetPy's first_gate being the first gate's centre) and converts
  its dBZ to mm/h with NEXRAD's Z = 300 R^1.4 (the prep's default for
  NEXRAD);

and requires agreement to 1e-3 relative on at least 99 % of those cells (a
cell on the boundary between two gates or radials may go either way). A
development tool, not a test dependency:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install metpy
    cargo build --release -p raincast
    /tmp/venv/bin/python scripts/crosscheck_nexrad.py FILE ... \\
        [--site-location LAT,LON[,HEIGHT_M]]

Exit status 1 when any file disagrees.
"""

import logging
import math

import numpy as np
from metpy.io import Level2File

from crosscheck_polar import agrees, main, prep, rain_cells, verdict


def ref_of(ray):
    moments = ray[-1]
    for key in (b"REF", "REF"):
        if key in moments:
            return moments[key]
    return None


def lowest_ref_sweep(volume):
    best = None
    for sweep in volume.sweeps:
        if not sweep or ref_of(sweep[0]) is None:
            continue
        el = float(np.mean([ray[0].el_angle for ray in sweep]))
        if best is None or el < best[0] - 0.2:
            best = (el, sweep)
    return best


def check(raincast, path, tmp, args):
    extra = ["--site-location", args.site_location] if args.site_location else []
    summary, grid = prep(raincast, path, tmp, extra)
    if grid is None:
        return False, summary
    el, sweep = lowest_ref_sweep(Level2File(str(path)))
    azimuths = np.array([ray[0].az_angle for ray in sweep])
    agree = total = 0
    # The mapping is cached per elevation rounded to 0.1 deg.
    for v, slant, az in rain_cells(grid, round(el, 1)):
        # The 0.1 deg azimuth bin's centre, as the mapping does.
        az = (math.floor(az * 10.0) + 0.5) / 10.0
        ray = int(np.argmin(np.abs((azimuths - az + 180.0) % 360.0 - 180.0)))
        hdr, dbz = ref_of(sweep[ray])
        gate = round((slant - hdr.first_gate * 1000.0) / (hdr.gate_width * 1000.0))
        if not 0 <= gate < len(dbz) or not np.isfinite(dbz[gate]):
            continue
        rate = (10 ** (dbz[gate] / 10) / 300.0) ** (1 / 1.4)
        total += 1
        agree += agrees(rate, v)
    return verdict(summary, f"lowest REF sweep {el:.2f} deg, {len(sweep)} radials", agree, total)


if __name__ == "__main__":
    # MetPy warns about every clutter-map segment a pre-ORDA RDA numbered
    # out of sequence; Raincast skips those frames too.
    logging.getLogger("metpy.io.nexrad").setLevel(logging.ERROR)
    main(__doc__, check, lambda ap: ap.add_argument(
        "--site-location", help="LAT,LON[,HEIGHT_M] passed to raincast prep"))
