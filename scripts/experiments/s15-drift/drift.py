"""Session 15 diagnostic (issue 17, calibration on BOM 02): does the forecast's
own rain rate explain why the reliability of the raw probability drifts
between the two halves of the day?

For every start time with 3 past scans, runs `raincast nowcast` (release
binary of main) at the given lead steps, computes the service's
neighbourhood probability of rain >= 0.1 mm/h (half-width 2 km + 0.12 km per
minute of lead), and tabulates the observed frequency of rain >= 0.1 mm/h
per probability bin and per class of the forecast rate at the cell, for the
fit half (verifying scan before the middle of the day) and the test half
(issued after it), the split of `raincast verify`.

    /tmp/pysteps-venv/bin/python scripts/experiments/s15-drift/drift.py \
        ../shared/data/bom/02 6 0.5 5,8,10     # folder, step min, cell km, lead steps
"""
import os, sys, tempfile

import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import compare_pysteps as cp
RC = os.environ.get("RAINCAST", os.path.expanduser("~/.cache/raincast/target/release/raincast"))
folder, step_min, cell_km = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
lead_steps = [int(x) for x in sys.argv[4].split(",")]
tmp = tempfile.mkdtemp()
scans = cp.prep_all(RC, cp.list_scans(folder), tmp)
nl = max(lead_steps)
cases = cp.cases_of(scans, step_min * 60, nl)
t0, t1 = scans[0]["time"].timestamp(), scans[-1]["time"].timestamp()
mid = (t0 + t1) / 2
def nprob(f, thr, r):
    known = np.isfinite(f).astype(np.int64); wet = (np.nan_to_num(f, nan=-1) >= thr).astype(np.int64)
    def box(a):
        c = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        R, C = a.shape
        r0 = np.clip(np.arange(R) - r, 0, R); r1 = np.clip(np.arange(R) + r + 1, 0, R)
        c0 = np.clip(np.arange(C) - r, 0, C); c1 = np.clip(np.arange(C) + r + 1, 0, C)
        return c[r1][:, c1] - c[r0][:, c1] - c[r1][:, c0] + c[r0][:, c0]
    k, w = box(known), box(wet)
    p = np.where(k > 0, w / np.maximum(k, 1), np.nan)
    p[~np.isfinite(f)] = np.nan
    return p
classes = [0, 0.1, 0.5, 1, 2, 5, 1e9]
out = {}
for ci, case in enumerate(cases):
    paths = [scans[i]["path"] for i in case[:3]]
    leads = [s * step_min for s in lead_steps]
    fc, _w, info = cp.run_raincast(RC, paths, leads, tmp, "sprog")
    for li, s in enumerate(lead_steps):
        ob = np.load(scans[case[2 + s]]["npy"])
        vt = scans[case[2 + s]]["time"].timestamp(); bt = scans[case[2]]["time"].timestamp()
        half = "fit" if vt < mid else ("test" if bt >= mid else None)
        if half is None: continue
        f = fc[li]
        r = int(round((2.0 + 0.12 * s * step_min) / cell_km))
        p = nprob(f, 0.1, r)
        m = np.isfinite(p) & np.isfinite(ob)
        e = (ob[m] >= 0.1); pp = p[m]; ff = np.nan_to_num(f[m], nan=0)
        pb = np.minimum((pp * 10).astype(int), 9)
        fcls = np.digitize(ff, classes) - 1
        key = (s, half)
        acc = out.setdefault(key, np.zeros((10, 6, 3)))
        np.add.at(acc, (pb, fcls, 0), 1); np.add.at(acc, (pb, fcls, 1), e); np.add.at(acc, (pb, fcls, 2), pp)
    print(f"\rcase {ci+1}/{len(cases)}", end="", file=sys.stderr)
print(file=sys.stderr)
np.save(os.path.join(tmp, "out_%s.npy") % os.path.basename(folder.rstrip("/")), {str(k): v for k, v in out.items()}, allow_pickle=True)
for s in lead_steps:
    print(f"lead {s*step_min} min")
    for half in ("fit", "test"):
        a = out.get((s, half))
        if a is None: continue
        print(f"  {half}: per p-bin obs freq (cells) overall, then by forecast class {classes[1:-1]}")
        for b in range(10):
            n = a[b, :, 0].sum()
            if n == 0: continue
            row = " ".join(f"{a[b,c,1]/a[b,c,0]:.3f}({a[b,c,0]/n*100:4.1f}%)" if a[b,c,0] > 0 else "   -   (    )" for c in range(6))
            print(f"   p{b}: {a[b,:,1].sum()/n:.3f} n={int(n):8d} | {row}")
