"""What the polar cross-checks share (crosscheck_odim_polar.py,
crosscheck_nexrad.py): running ``raincast prep`` on a file, walking the rain
cells of its 500 x 500 grid of 1 km cells with the slant range and azimuth
each cell samples (4/3 Earth beam model), and the command line.
"""

import argparse
import json
import math
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

EARTH_M = 6_371_000.0
KE = 4.0 / 3.0 * EARTH_M
CELL_M = 1000.0


def prep(raincast, path, tmp, extra=()):
    """``raincast prep PATH --npy``: (summary, grid) or (error text, None)."""
    npy = pathlib.Path(tmp) / (path.name + ".npy")
    res = subprocess.run([raincast, "prep", str(path), "--npy", str(npy), *extra],
                         capture_output=True, text=True)
    if res.returncode != 0:
        return f"raincast prep failed: {res.stderr.strip()}", None
    return json.loads(res.stdout), np.load(npy)


def rain_cells(grid, elevation_deg, step=1):
    """(rate, slant range m, azimuth deg) of every `step`-th cell with at
    least 1 mm/h, the radar on the grid's centre corner."""
    n = grid.shape[0]
    theta = math.radians(elevation_deg)
    for r in range(0, n, step):
        for c in range(0, n, step):
            v = grid[r, c]
            if not np.isfinite(v) or v < 1.0:
                continue
            x = (c + 0.5 - n / 2) * CELL_M
            y = (n / 2 - r - 0.5) * CELL_M
            phi = math.hypot(x, y) / KE
            slant = KE * math.sin(phi) / math.cos(theta + phi)
            yield v, slant, math.degrees(math.atan2(x, y)) % 360.0


def agrees(rate, value):
    return abs(rate - value) <= 1e-3 * max(1.0, rate)


def verdict(summary, sweep, agree, total):
    """(ok, text): at least 99 % of at least one compared cell agree."""
    share = agree / total if total else 0.0
    text = (f"{summary['source']} {summary['time']}: {sweep}, "
            f"{agree}/{total} sampled rain cells agree ({share:.3f})")
    return total > 0 and share >= 0.99, text


def main(doc, check, add_arguments=lambda ap: None):
    """Runs `check(raincast, path, tmp, args) -> (ok, text)` on every file
    given; exit status 1 when any disagrees."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("files", nargs="+", type=pathlib.Path)
    ap.add_argument("--raincast", default="target/release/raincast")
    add_arguments(ap)
    args = ap.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for f in args.files:
            ok, text = check(args.raincast, f, tmp, args)
            print(("ok   " if ok else "FAIL ") + f"{f.name}: {text}")
            failed |= not ok
    sys.exit(1 if failed else 0)
