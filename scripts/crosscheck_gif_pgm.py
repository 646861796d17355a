#!/usr/bin/env python3
"""Cross-check Raincast's MeteoSwiss GIF and FMI PGM decoders against an
independent reader (Pillow + NumPy, following pysteps' import_mch_gif and
import_fmi_pgm conventions).

For each file it runs `raincast prep FILE --npy OUT` (the rain rate in mm/h
before thresholding), reads the same file with Pillow, converts it to mm/h
and checks that
  * the shapes are equal,
  * the NaN masks are identical,
  * finite cells agree to 1e-3 relative,
  * the scan time printed by raincast equals the one in the file.

Usage (needs numpy and Pillow, e.g. in a throw-away venv):
  python3 scripts/crosscheck_gif_pgm.py --raincast target/debug/raincast \
      ../shared/data/mch/20160711/*.gif ../shared/data/fmi/20160928/*.pgm.gz
Exit status 0 when every file agrees.
"""

import argparse
import datetime as dt
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

RTOL = 1e-3


def mch_gif_rate(path):
    """mm/h from an AQC GIF: raw palette indices, pysteps' AQC table x 12."""
    idx = np.array(Image.open(path)).astype(int)
    i = np.arange(256, dtype=float)
    depth = (10.0 ** ((i - 71.5) / 20.0) / 316.0) ** (1.0 / 1.5)  # mm / 5 min
    lut = depth * 12.0
    lut[(i < 2) | ((i > 250) & (i < 255))] = 0.0
    lut[255] = np.nan
    name = os.path.basename(path)
    yy, doy, hh, mm = int(name[3:5]), int(name[5:8]), int(name[8:10]), int(name[10:12])
    year = 1900 + yy if yy >= 69 else 2000 + yy
    t = dt.datetime(year, 1, 1, hh, mm, tzinfo=dt.timezone.utc) + dt.timedelta(days=doy - 1)
    return lut[idx], t


def fmi_pgm_rate(path):
    """mm/h from an FMI PGM: mask the missing value (the line after the size
    line), dBZ = (p - 64) / 2, Z = 223 R^1.53 (as pysteps)."""
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    lines = raw[:65536].split(b"\n")
    meta = {}
    k = 1
    while lines[k].startswith(b"#"):
        words = lines[k][1:].decode().split()
        if len(words) >= 2:
            meta[words[0]] = words[1:]
        k += 1
    missing = int(lines[k + 1])
    pix = np.array(Image.open(io.BytesIO(raw)))
    dbz = (pix.astype(float) - 64.0) / 2.0
    dbz[pix == missing] = np.nan
    rate = (10.0 ** (dbz / 10.0) / 223.0) ** (1.0 / 1.53)
    t = dt.datetime.strptime(meta["obstime"][0], "%Y%m%d%H%M").replace(tzinfo=dt.timezone.utc)
    return rate, t


def ours(raincast, path, tmp):
    out = os.path.join(tmp, "rate.npy")
    res = subprocess.run(
        [raincast, "prep", path, "--npy", out], check=True, capture_output=True, text=True
    )
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    return np.load(out), summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--raincast", default="target/debug/raincast")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    failures = 0
    worst = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.files:
            kind = "mch" if path.lower().endswith(".gif") else "fmi"
            ref, t = mch_gif_rate(path) if kind == "mch" else fmi_pgm_rate(path)
            got, summary = ours(args.raincast, path, tmp)
            problems = []
            if got.shape != ref.shape:
                problems.append(f"shape {got.shape} != {ref.shape}")
            else:
                nan_got, nan_ref = np.isnan(got), np.isnan(ref)
                if (nan_got != nan_ref).any():
                    problems.append(f"NaN mask differs in {(nan_got != nan_ref).sum()} cells")
                fin = ~nan_ref & ~nan_got
                g, r = got[fin].astype(float), ref[fin]
                rel = np.abs(g - r) / np.maximum(np.abs(r), 1e-30)
                rel[(g == 0) & (r == 0)] = 0.0
                max_rel = float(rel.max()) if rel.size else 0.0
                worst[kind] = max(worst.get(kind, 0.0), max_rel)
                if max_rel > RTOL:
                    problems.append(f"max relative difference {max_rel:.3g} > {RTOL}")
            want_t = t.strftime("%Y-%m-%dT%H:%M:%SZ")
            if summary.get("time") != want_t:
                problems.append(f"time {summary.get('time')} != {want_t}")
            status = "OK" if not problems else "FAIL: " + "; ".join(problems)
            failures += bool(problems)
            print(
                f"{os.path.basename(path)}: {status} "
                f"(nan {int(np.isnan(ref).sum())}, finite {int(np.isfinite(ref).sum())}, "
                f"max {np.nanmax(ref):.3f} mm/h)"
            )
    print(f"files {len(args.files)}, failed {failures}, worst relative difference {worst}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
