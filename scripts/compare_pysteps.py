#!/usr/bin/env python3
"""Nowcast skill of Raincast next to persistence and pysteps, on one radar day.

A reproducible comparison, not a test. For one folder of consecutive scans of
one radar it:

1. decodes every scan with ``raincast prep FILE --npy`` into a temporary folder
   (rain rate in mm/h before the rain threshold, NaN = no data) and reads the
   scan time from the JSON that ``raincast prep`` prints;
2. takes every start time that has 3 past scans (the start scan and the two
   before it, equally spaced) and a scan at every multiple of the scan interval
   up to ``--max-lead`` minutes (default 60) after it; with ``--max-cases N``
   the start times are subsampled evenly to at most N;
3. runs, for each start time:
   * **persistence**: the latest scan, unchanged;
   * **pysteps LK+SL**: as in the pysteps extrapolation tutorial: dBR
     transform (threshold 0.1 mm/h, -15 dBR where dry), dense Lucas-Kanade on
     the 3 frames (no data masked), no data set to -15 dBR, semi-Lagrangian
     extrapolation of the latest frame, back-transform with threshold -10 dBR;
   * **pysteps S-PROG**: the same dBR frames with no data set to -15 dBR, the
     same motion, ``sprog.forecast`` with ``--sprog-levels`` cascade levels
     (default 6), AR(2), precipitation threshold -10 dBR, pysteps' defaults
     otherwise (FFT, Gaussian band-pass, CDF probability matching);
   * **Raincast**: ``raincast nowcast`` on the same 3 files with ``--leads`` =
     every scan interval up to ``--max-lead``, reading its ``lead_MMM.npy``
     (the default S-PROG-like smoothing), and again with
     ``--smoothing none`` (plain extrapolation, the like-for-like partner of
     pysteps LK+SL); a start time where ``raincast nowcast`` fails is
     reported and left out for every method;
4. scores every method with the one scorer of this script, at 1 mm/h
   (``--threshold``): CSI per case (then the mean over cases, as in the
   issue's table), pooled CSI (one contingency table summed over all cases)
   and FSS with a 10-cell window (``--fss-window``, mean over cases). Only
   finite pairs count. Two masks are reported:
   * ``common``: cells where the observation and *every* forecast are finite
     (all methods judged on the same cells, as ``raincast verify`` does);
   * ``own``: cells where the observation and *that* forecast are finite.
5. records the wall-clock time of each nowcast (informational only; the
   Raincast figure is the whole ``raincast nowcast`` process, decoding
   included, and depends on the binary's build profile).

Usage (from the repository root, with a Python that has pysteps, numpy and
scipy)::

    nice -n 10 python scripts/compare_pysteps.py ../shared/data/bom/02 \
        --raincast target/release/raincast --json-out /tmp/bom02.json

    --max-cases N       subsample start times evenly to at most N
    --no-sprog          skip pysteps S-PROG
    --sprog-levels K    cascade levels of S-PROG (default 6)
    --max-lead MIN      longest lead (default 60)
    --report-leads L    leads shown in the summary table (default 30,60)

It prints a Markdown table per mask and, with ``--json-out``, writes every
per-lead figure. The data sets of ../shared/data come from pysteps-data;
credit the weather services when showing results.
"""

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

import numpy as np
from scipy.ndimage import uniform_filter

METHODS = ["persistence", "pysteps_lk_sl", "pysteps_sprog", "raincast_none", "raincast"]
LABELS = {
    "persistence": "persistence",
    "pysteps_lk_sl": "pysteps LK + semi-Lagrangian",
    "pysteps_sprog": "pysteps S-PROG",
    "raincast_none": "Raincast, no smoothing (`--smoothing none`)",
    "raincast": "Raincast (default)",
}


def list_scans(folder):
    out = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if name.startswith(".") or name.lower().endswith((".md", ".txt")):
                continue
            out.append(os.path.join(root, name))
    return sorted(out)


def parse_time(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def prep_all(raincast, files, tmp):
    scans = []
    for i, path in enumerate(files):
        npy = os.path.join(tmp, f"scan_{i:04d}.npy")
        res = subprocess.run(
            [raincast, "prep", path, "--npy", npy], capture_output=True, text=True
        )
        if res.returncode != 0:
            print(f"skip {path}: {res.stderr.strip()}", file=sys.stderr)
            continue
        meta = json.loads(res.stdout.strip().splitlines()[-1])
        scans.append({"path": path, "npy": npy, "time": parse_time(meta["time"]),
                      "shape": (meta["rows"], meta["cols"]), "proj": meta["projection"]})
        print(f"\rprep {i + 1}/{len(files)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    return scans


def cases_of(scans, step_s, n_leads):
    """Index lists [t-2, t-1, t, t+1, ..., t+n_leads] (in scan steps) of every
    start scan t that has all of them."""
    by_time = {int(s["time"].timestamp()): k for k, s in enumerate(scans)}
    cases = []
    for s in scans:
        t = int(s["time"].timestamp())
        idx = [by_time.get(t + j * step_s) for j in range(-2, n_leads + 1)]
        if all(k is not None for k in idx):
            cases.append(idx)
    return cases


class Score:
    """Accumulates per-case CSI, pooled contingency and per-case FSS for one lead."""

    def __init__(self):
        self.csi = []
        self.fss = []
        self.hits = self.misses = self.false_alarms = 0

    def add(self, fc, ob, mask, thr, window):
        f = (fc >= thr) & mask
        o = (ob >= thr) & mask
        a = int(np.sum(f & o))
        b = int(np.sum(f & ~o))
        c = int(np.sum(~f & o))
        self.hits += a
        self.false_alarms += b
        self.misses += c
        if a + b + c > 0:
            self.csi.append(a / (a + b + c))
        # FSS (Roberts and Lean 2008): event fractions in window x window cells,
        # cells outside the grid or outside the mask count as non-events,
        # sums over the masked cells.
        pf = uniform_filter(f.astype(np.float64), size=window, mode="constant", cval=0.0)
        po = uniform_filter(o.astype(np.float64), size=window, mode="constant", cval=0.0)
        num = np.sum(((pf - po) ** 2)[mask])
        den = np.sum((pf ** 2)[mask]) + np.sum((po ** 2)[mask])
        if den > 0:
            self.fss.append(1.0 - num / den)

    def summary(self):
        den = self.hits + self.misses + self.false_alarms
        return {
            "cases_with_events": len(self.csi),
            "csi_mean": float(np.mean(self.csi)) if self.csi else None,
            "csi_pooled": self.hits / den if den else None,
            "fss_mean": float(np.mean(self.fss)) if self.fss else None,
        }


def to_dbr(r):
    # pysteps' transform: dBR = 10 log10(R) where R >= 0.1 mm/h, -15 dBR
    # below, NaN kept.
    from pysteps.utils import transformation

    out, _ = transformation.dB_transform(r.copy(), threshold=0.1, zerovalue=-15.0)
    return out


def from_dbr(d):
    from pysteps.utils import transformation

    return transformation.dB_transform(d, threshold=-10.0, inverse=True)[0]


def run_pysteps(frames, n_leads, sprog, sprog_levels):
    from pysteps import nowcasts
    from pysteps.motion.lucaskanade import dense_lucaskanade

    out = {}
    times = {}
    t0 = time.perf_counter()
    dbr = to_dbr(np.stack(frames).astype(np.float64))
    velocity = dense_lucaskanade(dbr)
    t_motion = time.perf_counter() - t0
    filled = dbr.copy()
    filled[~np.isfinite(filled)] = -15.0
    t1 = time.perf_counter()
    extrap = nowcasts.get_method("extrapolation")
    fc = extrap(filled[-1], velocity, n_leads)
    out["pysteps_lk_sl"] = from_dbr(fc)
    times["pysteps_lk_sl"] = t_motion + time.perf_counter() - t1
    if sprog:
        t2 = time.perf_counter()
        method = nowcasts.get_method("sprog")
        fc = method(
            filled[-3:],
            velocity,
            n_leads,
            n_cascade_levels=sprog_levels,
            precip_thr=-10.0,
            ar_order=2,
        )
        out["pysteps_sprog"] = from_dbr(fc)
        times["pysteps_sprog"] = t_motion + time.perf_counter() - t2
    return out, times


def run_raincast(raincast, paths, leads, tmp, smoothing):
    outdir = tempfile.mkdtemp(dir=tmp, prefix=f"nc_{smoothing}_")
    cmd = [raincast, "nowcast", *paths, "--leads", ",".join(str(x) for x in leads),
           "--out", outdir, "--json", "--smoothing", smoothing]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    info = json.loads(res.stdout.strip().splitlines()[-1])
    fields = []
    for lead in leads:
        p = os.path.join(outdir, f"lead_{lead:03d}.npy")
        fields.append(np.load(p).astype(np.float64))
        os.remove(p)
    os.rmdir(outdir)
    return np.stack(fields), wall, info


def fmt(v):
    return "–" if v is None else f"{v:.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--raincast", default="target/release/raincast")
    ap.add_argument("--max-lead", type=int, default=60, help="minutes")
    ap.add_argument("--threshold", type=float, default=1.0, help="mm/h")
    ap.add_argument("--fss-window", type=int, default=10, help="cells")
    ap.add_argument("--max-cases", type=int, default=0, help="0 = all")
    ap.add_argument("--no-sprog", action="store_true")
    ap.add_argument("--sprog-levels", type=int, default=6)
    ap.add_argument("--report-leads", default="30,60")
    ap.add_argument("--json-out")
    args = ap.parse_args()

    files = list_scans(args.folder)
    if len(files) < 4:
        sys.exit(f"{args.folder}: fewer than 4 files")
    with tempfile.TemporaryDirectory(prefix="compare_pysteps_") as tmp:
        scans = prep_all(args.raincast, files, tmp)
        # One radar: keep the majority grid.
        keys = [(s["shape"], s["proj"]) for s in scans]
        major = max(set(keys), key=keys.count)
        scans = [s for s, k in zip(scans, keys) if k == major]
        scans.sort(key=lambda s: s["time"])
        steps = np.diff([s["time"].timestamp() for s in scans])
        step_s = int(np.median(steps))
        n_leads = args.max_lead * 60 // step_s
        leads = [(j + 1) * step_s // 60 for j in range(n_leads)]
        if any((j + 1) * step_s % 60 for j in range(n_leads)):
            sys.exit(f"scan interval {step_s} s is not a whole number of minutes")
        cases = cases_of(scans, step_s, n_leads)
        all_cases = len(cases)
        if args.max_cases and len(cases) > args.max_cases:
            pick = np.linspace(0, len(cases) - 1, args.max_cases).round().astype(int)
            cases = [cases[i] for i in sorted(set(pick))]
        print(f"{len(scans)} scans every {step_s} s; {all_cases} start times with 3 past "
              f"scans and {args.max_lead} min of future; scoring {len(cases)}", file=sys.stderr)
        methods = [m for m in METHODS if not (args.no_sprog and m == "pysteps_sprog")]
        scores = {mask: {m: [Score() for _ in leads] for m in methods} for mask in ("common", "own")}
        wall = {m: [] for m in methods if m != "persistence"}
        raincast_ms = {"raincast": [], "raincast_none": []}
        started = time.perf_counter()
        failed = []
        for n, idx in enumerate(cases):
            past = [np.load(scans[k]["npy"]).astype(np.float64) for k in idx[:3]]
            obs = [np.load(scans[k]["npy"]).astype(np.float64) for k in idx[3:]]
            fcs = {"persistence": np.stack([past[-1]] * n_leads)}
            with contextlib.redirect_stdout(io.StringIO()):  # pysteps' progress prints
                py, py_t = run_pysteps(past, n_leads, not args.no_sprog, args.sprog_levels)
            fcs.update(py)
            for m, t in py_t.items():
                wall[m].append(t)
            paths = [scans[k]["path"] for k in idx[:3]]
            try:
                for m, sm in (("raincast", "sprog"), ("raincast_none", "none")):
                    fc, w, info = run_raincast(args.raincast, paths, leads, tmp, sm)
                    fcs[m] = fc
                    wall[m].append(w)
                    raincast_ms[m].append(info["total_ms"])
            except RuntimeError as e:
                # Not scored for any method, so the methods keep the same cases.
                print(f"\nskipping start time {scans[idx[2]]['time']}: {e}", file=sys.stderr)
                failed.append(str(scans[idx[2]]["time"]))
                continue
            for j in range(n_leads):
                o = obs[j]
                ok_obs = np.isfinite(o)
                common = ok_obs.copy()
                for m in methods:
                    common &= np.isfinite(fcs[m][j])
                for m in methods:
                    f = fcs[m][j]
                    scores["common"][m][j].add(f, o, common, args.threshold, args.fss_window)
                    scores["own"][m][j].add(f, o, ok_obs & np.isfinite(f), args.threshold,
                                            args.fss_window)
            print(f"\rcase {n + 1}/{len(cases)} ({time.perf_counter() - started:.0f} s)",
                  end="", file=sys.stderr)
        print(file=sys.stderr)

    result = {
        "folder": args.folder,
        "scans": len(scans),
        "step_s": step_s,
        "start_times_available": all_cases,
        "cases": len(cases) - len(failed),
        "first_start": scans[cases[0][2]]["time"].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "last_start": scans[cases[-1][2]]["time"].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "failed_cases": failed,
        "threshold_mm_h": args.threshold,
        "fss_window": args.fss_window,
        "sprog_levels": None if args.no_sprog else args.sprog_levels,
        "leads_min": leads,
        "scores": {mask: {m: [s.summary() for s in per] for m, per in d.items()}
                   for mask, d in scores.items()},
        "wall_s_mean": {m: float(np.mean(v)) for m, v in wall.items()},
        "raincast_total_ms_mean": {m: float(np.mean(v)) for m, v in raincast_ms.items()},
    }
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(result, fh, indent=1)

    report = [int(x) for x in args.report_leads.split(",")]
    cols = [leads.index(r) for r in report if r in leads]
    print(f"{args.folder}: {len(cases) - len(failed)} cases ({all_cases} available), scan every {step_s} s, "
          f"CSI and FSS at {args.threshold} mm/h, FSS window {args.fss_window} cells")
    for mask in ("common", "own"):
        print(f"\nmask: {mask}")
        head = "| method |"
        for j in cols:
            head += f" CSI {leads[j]} min mean (pooled) | FSS {leads[j]} min |"
        print(head)
        print("|---|" + "---|---|" * len(cols))
        pers = {j: result["scores"][mask]["persistence"][j]["csi_mean"] for j in cols}
        for m in methods:
            line = f"| {LABELS[m]} |"
            for j in cols:
                s = result["scores"][mask][m][j]
                gain = ""
                if m != "persistence" and s["csi_mean"] is not None and pers[j]:
                    gain = f" {100 * (s['csi_mean'] / pers[j] - 1):+.0f} %"
                line += f" {fmt(s['csi_mean'])}{gain} ({fmt(s['csi_pooled'])}) | {fmt(s['fss_mean'])} |"
            print(line)
    print("\nwall-clock per nowcast (s, mean):",
          ", ".join(f"{m} {v:.2f}" for m, v in result["wall_s_mean"].items()))
    print("raincast --json total_ms (mean):",
          ", ".join(f"{m} {v:.0f}" for m, v in result["raincast_total_ms_mean"].items()))


if __name__ == "__main__":
    main()
