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
   * **pysteps ANVIL** (only with ``--anvil``): ``nowcasts.get_method("anvil")``
     on rain rate, as its docs recommend (the 4 past scans it needs for its
     default ARI(2,1), rates below 0.1 mm/h and no data set to 0), the same
     LK motion as S-PROG, pysteps' defaults otherwise (6 levels, AR window
     radius 50 cells, rain-rate mask). With ``--anvil`` a start time also
     needs the scan before the 3 past scans, so the first start time of the
     day drops out for every method; the others still get 3 scans;
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

   Raincast's CSI against pysteps S-PROG's is then given per lead with a 95 %
   interval: the two methods paired case by case (common mask), the ratio of
   their mean CSIs resampled by a circular block bootstrap over the cases,
   in blocks of the consecutive cases whose scored hours overlap (they share
   observations, so they are not independent). An interval that straddles
   0 says the day's cases cannot tell the two apart; with fewer than three
   such blocks (a short day) no interval is given;
5. times every method in this one process run, single thread (``--threads``,
   default 1: ``OMP_NUM_THREADS`` and friends are set before numpy is
   imported, ``cv2.setNumThreads``, ``RAYON_NUM_THREADS`` for Raincast), as
   the median over cases of *motion + every lead to* ``--max-lead``, without
   file I/O: for Raincast its own ``motion_ms + extrapolate_ms`` as printed
   by ``raincast nowcast --json``; for the Python methods the time from the
   frames in memory to the last lead. A second table splits the time of the
   OpenCV recipe and of both Raincast runs into the motion and the leads
   (the OpenCV recipe's motion is its dBR, 8-bit scaling and DIS; its leads
   are the maps and ``cv2.remap``);
6. also runs the **OpenCV DIS** recipe (the way rainymotion's "Dense" model
   is built, issue 16): the last two frames in dBR (-15 dBR where dry or no
   data) scaled linearly to 8 bits over their joint range,
   ``DISOpticalFlow_create(DISOPTICAL_FLOW_PRESET_ULTRAFAST)`` from the
   previous to the latest frame, then for each lead *n* a backward
   ``cv2.remap`` (linear, NaN beyond the edge) of the latest rain rate by
   ``n`` times that flow (constant motion).

With ``--timing-only`` it scores nothing: it takes the last 3 scans of the
folder (OPERA has only 3), runs each method ``--repeats`` times with
``--leads`` and prints the median times and the peak RSS of one whole
``raincast nowcast`` process (``/usr/bin/time -f %M``).

Usage (from the repository root, with a Python that has pysteps, numpy and
scipy)::

    nice -n 10 python scripts/compare_pysteps.py ../shared/data/bom/02 \
        --raincast target/release/raincast --json-out /tmp/bom02.json

    --max-cases N       subsample start times evenly to at most N
    --no-sprog          skip pysteps S-PROG
    --sprog-levels K    cascade levels of S-PROG (default 6)
    --max-lead MIN      longest lead (default 60)
    --report-leads L    leads shown in the summary table (default 30,60)
    --threads N         threads for every method (default 1)
    --no-pysteps        skip every pysteps method (quick runs)
    --anvil             add pysteps ANVIL (see above; off by default)
    --warm N            also time Raincast warm: the default run builds the
                        same nowcast N more times in its process
                        (``raincast nowcast --repeat``) and the last run's
                        time is reported as "Raincast (default), warm", as
                        a long-running service builds its nowcasts and as
                        the Python methods run here (one process, case after
                        case); the "Raincast (default)" figure stays that of
                        the first run in a fresh process (default 0: off)
    --timing-only       speed and peak memory only (see above), with
                        --leads 15,30,45,60 and --repeats 5

The first table printed is the side-by-side one of issue 16: method | motion
+ all leads, median ms | CSI at the report leads (mean over cases, common
mask).

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


def _threads_from_argv():
    """--threads N (default 1), read before numpy is imported: the BLAS and
    OpenMP pools take their size from the environment at import time."""
    argv = sys.argv
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"


THREADS = _threads_from_argv()
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[_var] = THREADS

import numpy as np  # noqa: E402
from scipy.ndimage import uniform_filter  # noqa: E402

METHODS = ["persistence", "opencv_dis", "pysteps_lk_sl", "pysteps_sprog", "pysteps_anvil",
           "raincast_none", "raincast"]
LABELS = {
    "persistence": "persistence",
    "opencv_dis": "OpenCV DIS (ultrafast) + `cv2.remap`",
    "pysteps_lk_sl": "pysteps LK + semi-Lagrangian",
    "pysteps_sprog": "pysteps S-PROG",
    "pysteps_anvil": "pysteps ANVIL (rain rate, ARI(2,1))",
    "raincast_none": "Raincast, no smoothing (`--smoothing none`)",
    "raincast": "Raincast (default)",
    "raincast_warm": "Raincast (default), warm (`--repeat`)",
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


def step_tolerance_s(step_s):
    """How far a scan may lie from its expected time: a tenth of the step, at
    least 30 s (the rule of Raincast's engine, `step_tolerance_s`)."""
    return max(0.1 * step_s, 30.0)


def cases_of(scans, step_s, n_leads, n_past=3):
    """Index lists [t-n_past+1, ..., t, t+1, ..., t+n_leads] (in scan steps) of
    every start scan t that has all of them. Radars' times jitter, so each
    scan is the one nearest one step from its neighbour, every interval
    within `step_tolerance_s` of the step (as Raincast's engine accepts)."""
    times = np.array([s["time"].timestamp() for s in scans])
    tol = step_tolerance_s(step_s)

    def near(want):
        k = int(np.searchsorted(times, want))
        best = min((j for j in (k - 1, k) if 0 <= j < len(times)),
                   key=lambda j: abs(times[j] - want), default=None)
        return best if best is not None and abs(times[best] - want) <= tol else None

    def walk(k, sign, count):
        out = []
        for _ in range(count):
            k = near(times[k] + sign * step_s)
            if k is None:
                return None
            out.append(k)
        return out

    cases = []
    for k in range(len(times)):
        back, ahead = walk(k, -1, n_past - 1), walk(k, 1, n_leads)
        if back is not None and ahead is not None:
            cases.append(back[::-1] + [k] + ahead)
    return cases


# Fewer blocks than this and a bootstrap only reshuffles the same few hours.
MIN_BLOCKS = 3


def paired_ratio_interval(a, b, block, n_boot=4000, seed=1):
    """Mean CSI of method ``a`` over that of ``b`` minus 1, on the cases where
    both have a CSI, with a 95 % interval from a circular block bootstrap
    over the cases (Politis and Romano 1992): the cases are resampled in
    runs of ``block`` consecutive ones, because cases whose scored hours
    overlap share their observations and are not independent. ``a`` and
    ``b`` are ``Score``s; returns ``(ratio - 1, low, high, cases)``, with
    ``low`` and ``high`` None when the cases hold fewer than
    ``MIN_BLOCKS`` blocks (too few independent hours to resample), or None
    without paired cases. Fixed seed: the same report every run."""
    xa = dict(zip(a.csi_case, a.csi))
    xb = dict(zip(b.csi_case, b.csi))
    common = sorted(set(xa) & set(xb))
    n = len(common)
    if n == 0:
        return None
    x = np.array([xa[c] for c in common])
    y = np.array([xb[c] for c in common])
    if y.mean() <= 0:
        return None
    block = max(1, block)
    if n < MIN_BLOCKS * block:
        return float(x.mean() / y.mean() - 1), None, None, n
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(n_boot, -(-n // block)))
    idx = ((starts[:, :, None] + np.arange(block)) % n).reshape(n_boot, -1)[:, :n]
    xs, ys = x[idx].mean(axis=1), y[idx].mean(axis=1)
    ok = ys > 0
    ratio = xs[ok] / ys[ok] - 1
    lo, hi = np.percentile(ratio, [2.5, 97.5])
    return float(x.mean() / y.mean() - 1), float(lo), float(hi), n


def dependent_cases(cases, n_past, n_leads):
    """Cases in a row whose scored windows (the start scan to its last lead)
    overlap: the bootstrap's block length. The start times are evenly
    subsampled, so their spacing in scans is about constant."""
    if len(cases) < 2:
        return 1
    starts = [c[n_past - 1] for c in cases]
    spacing = (starts[-1] - starts[0]) / (len(starts) - 1)
    return max(1, int(np.ceil(n_leads / max(spacing, 1e-9))))


def longest_lead_min(scans, step_s, n_past):
    """The longest lead, in minutes, that at least one start time can score."""
    n = 0
    while cases_of(scans, step_s, n + 1, n_past):
        n += 1
    return n * step_s // 60


class Score:
    """Accumulates per-case CSI, pooled contingency and per-case FSS for one lead."""

    def __init__(self):
        self.csi = []
        # The case (its position in the scored start times) of each CSI,
        # so that two methods' CSIs can be paired case by case.
        self.csi_case = []
        self.fss = []
        self.hits = self.misses = self.false_alarms = 0

    def add(self, fc, ob, mask, thr, window, case):
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
            self.csi_case.append(case)
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


def run_opencv(frames, n_leads):
    """The OpenCV DIS recipe (see the module docs). Returns the forecasts
    (n_leads, rows, cols), the seconds from the frames to the last lead, and
    the seconds of the motion alone (dBR, 8 bits and DIS)."""
    import cv2

    t0 = time.perf_counter()
    prev, last = (np.asarray(f, dtype=np.float32) for f in frames[-2:])
    dbr = []
    for f in (prev, last):
        d = np.full(f.shape, -15.0, dtype=np.float32)
        wet = np.isfinite(f) & (f >= 0.1)
        d[wet] = 10.0 * np.log10(f[wet])
        dbr.append(d)
    lo = min(float(d.min()) for d in dbr)
    hi = max(float(d.max()) for d in dbr)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    u8 = [np.clip((d - lo) * scale + 0.5, 0, 255).astype(np.uint8) for d in dbr]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    flow = dis.calc(u8[0], u8[1], None)  # prev(x) ≈ last(x + flow)
    t_motion = time.perf_counter() - t0
    rows, cols = last.shape
    gx, gy = np.meshgrid(np.arange(cols, dtype=np.float32), np.arange(rows, dtype=np.float32))
    out = np.empty((n_leads, rows, cols), dtype=np.float32)
    for n in range(1, n_leads + 1):
        mx = gx - n * flow[..., 0]
        my = gy - n * flow[..., 1]
        out[n - 1] = cv2.remap(last, mx, my, interpolation=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))
    return out, time.perf_counter() - t0, t_motion


def run_pysteps(frames, n_leads, sprog, sprog_levels, anvil_frames=None):
    """pysteps LK+SL and S-PROG on ``frames`` (3 scans), and ANVIL on
    ``anvil_frames`` (4 scans ending with the same 3) unless it is None."""
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
    if anvil_frames is not None:
        t3 = time.perf_counter()
        rate = np.stack(anvil_frames).astype(np.float64)
        rate[~np.isfinite(rate) | (rate < 0.1)] = 0.0
        method = nowcasts.get_method("anvil")
        out["pysteps_anvil"] = method(rate, velocity, n_leads, ar_order=2)
        times["pysteps_anvil"] = t_motion + time.perf_counter() - t3
    return out, times


def run_raincast(raincast, paths, leads, tmp, smoothing, rss=False, repeat=1):
    outdir = tempfile.mkdtemp(dir=tmp, prefix=f"nc_{smoothing}_")
    cmd = [raincast, "nowcast", *paths, "--leads", ",".join(str(x) for x in leads),
           "--out", outdir, "--json", "--smoothing", smoothing]
    if repeat > 1:
        cmd += ["--repeat", str(repeat)]
    rss_file = os.path.join(tmp, "rss.txt")
    if rss:
        cmd = ["/usr/bin/time", "-f", "%M", "-o", rss_file, *cmd]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    info = json.loads(res.stdout.strip().splitlines()[-1])
    if rss:
        with open(rss_file) as fh:
            info["peak_rss_kib"] = int(fh.read().split()[-1])
    fields = []
    for lead in leads:
        p = os.path.join(outdir, f"lead_{lead:03d}.npy")
        fields.append(np.load(p).astype(np.float64))
        os.remove(p)
    os.rmdir(outdir)
    return np.stack(fields), wall, info


def fmt(v):
    return "–" if v is None else f"{v:.3f}"


def timing_only(args, scans, tmp):
    """Speed and peak memory on the last 3 scans (see the module docs)."""
    leads = [int(x) for x in args.leads.split(",")]
    step_s = int(scans[-1]["time"].timestamp() - scans[-2]["time"].timestamp())
    steps = [lead * 60 / step_s for lead in leads]
    if any(abs(x - round(x)) > 1e-9 for x in steps):
        sys.exit(f"leads {leads} are not whole scan steps of {step_s} s")
    n_leads = int(round(max(steps)))
    past = [np.load(s["npy"]).astype(np.float64) for s in scans[-3:]]
    paths = [s["path"] for s in scans[-3:]]
    times = {"opencv_dis": [], "raincast": [], "raincast_none": []}
    if not args.no_pysteps:
        times["pysteps_lk_sl"] = []
    rss = {}
    for _ in range(args.repeats):
        _fc, t, _tm = run_opencv(past, n_leads)
        times["opencv_dis"].append(1e3 * t)
        if not args.no_pysteps:
            with contextlib.redirect_stdout(io.StringIO()):
                _py, py_t = run_pysteps(past, n_leads, False, args.sprog_levels)
            times["pysteps_lk_sl"].append(1e3 * py_t["pysteps_lk_sl"])
        for m, sm in (("raincast", "sprog"), ("raincast_none", "none")):
            _fc, _w, info = run_raincast(args.raincast, paths, leads, tmp, sm, rss=True)
            times[m].append(info["motion_ms"] + info["extrapolate_ms"])
            rss[m] = max(rss.get(m, 0), info["peak_rss_kib"])
    shape = scans[-1]["shape"]
    print(f"{args.folder}: last 3 scans ({shape[0]} x {shape[1]}, every {step_s} s), "
          f"leads {leads} min, {args.repeats} repeats, {THREADS} thread(s)")
    print("\n| method | motion + all leads, median ms | peak RSS of the process |")
    print("|---|---|---|")
    for m, v in times.items():
        mem = f"{rss[m] / 1024:.0f} MB" if m in rss else "–"
        print(f"| {LABELS[m]} | {np.median(v):.1f} | {mem} |")
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump({"folder": args.folder, "leads_min": leads, "threads": THREADS,
                       "times_ms": times, "peak_rss_kib": rss}, fh, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--raincast", default="target/release/raincast")
    ap.add_argument("--max-lead", type=int, default=60, help="minutes")
    ap.add_argument("--threshold", type=float, default=1.0, help="mm/h")
    ap.add_argument("--fss-window", type=int, default=10, help="cells")
    ap.add_argument("--max-cases", type=int, default=0, help="0 = all")
    ap.add_argument("--warm", type=int, default=0,
                    help="also time Raincast warm: N more runs in its process (default 0)")
    ap.add_argument("--no-sprog", action="store_true")
    ap.add_argument("--no-pysteps", action="store_true")
    ap.add_argument("--anvil", action="store_true", help="add pysteps ANVIL (4 past scans)")
    ap.add_argument("--sprog-levels", type=int, default=6)
    ap.add_argument("--report-leads", default="30,60")
    ap.add_argument("--threads", default="1", help="read before numpy is imported")
    ap.add_argument("--timing-only", action="store_true")
    ap.add_argument("--leads", default="15,30,45,60", help="minutes, --timing-only")
    ap.add_argument("--repeats", type=int, default=5, help="--timing-only")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(int(THREADS))

    files = list_scans(args.folder)
    if len(files) < (3 if args.timing_only else 4):
        sys.exit(f"{args.folder}: too few files")
    with tempfile.TemporaryDirectory(prefix="compare_pysteps_") as tmp:
        scans = prep_all(args.raincast, files, tmp)
        # One radar: keep the majority grid.
        keys = [(s["shape"], s["proj"]) for s in scans]
        major = max(set(keys), key=keys.count)
        scans = [s for s, k in zip(scans, keys) if k == major]
        scans.sort(key=lambda s: s["time"])
        if args.timing_only:
            timing_only(args, scans, tmp)
            return
        steps = np.diff([s["time"].timestamp() for s in scans])
        if len(steps) == 0:
            sys.exit(f"{args.folder}: fewer than two scans on one grid")
        step_s = int(np.median(steps))
        # Jittered times (e.g. 299 or 301 s): the whole minute within the tolerance.
        if abs(step_s - 60 * round(step_s / 60)) <= 30 and step_s >= 60:
            step_s = 60 * round(step_s / 60)
        n_leads = args.max_lead * 60 // step_s
        leads = [(j + 1) * step_s // 60 for j in range(n_leads)]
        if any((j + 1) * step_s % 60 for j in range(n_leads)):
            sys.exit(f"scan interval {step_s} s is not a whole number of minutes")
        n_past = 4 if args.anvil else 3  # ANVIL's ARI(2,1) needs ar_order + 2 scans
        cases = cases_of(scans, step_s, n_leads, n_past)
        all_cases = len(cases)
        if not cases:
            fits = longest_lead_min(scans, step_s, n_past)
            hint = (f"at most {fits} min fits: try --max-lead {fits} and --report-leads "
                    f"within it" if fits else f"no {n_past} scans in a row are {step_s} s apart")
            sys.exit(f"{args.folder}: {len(scans)} scans every {step_s} s, but no start time has "
                     f"{n_past} past scans and {args.max_lead} min of future scans; {hint}")
        if args.max_cases and len(cases) > args.max_cases:
            pick = np.linspace(0, len(cases) - 1, args.max_cases).round().astype(int)
            cases = [cases[i] for i in sorted(set(pick))]
        print(f"{len(scans)} scans every {step_s} s; {all_cases} start times with {n_past} past "
              f"scans and {args.max_lead} min of future; scoring {len(cases)}", file=sys.stderr)
        skip = set()
        if args.no_sprog or args.no_pysteps:
            skip.add("pysteps_sprog")
        if args.no_pysteps:
            skip.add("pysteps_lk_sl")
        if args.no_pysteps or not args.anvil:
            skip.add("pysteps_anvil")
        methods = [m for m in METHODS if m not in skip]
        scores = {mask: {m: [Score() for _ in leads] for m in methods} for mask in ("common", "own")}
        # Motion + every lead, ms, without file I/O (see the module docs).
        compute_ms = {m: [] for m in methods if m != "persistence"}
        if args.warm:
            compute_ms["raincast_warm"] = []
        # The motion alone, for the methods that report it apart.
        motion_ms = {m: [] for m in ("opencv_dis", "raincast", "raincast_none")}
        started = time.perf_counter()
        failed = []
        for n, idx in enumerate(cases):
            older = [np.load(scans[k]["npy"]).astype(np.float64) for k in idx[:n_past - 3]]
            idx = idx[n_past - 3:]  # from here on: [t-2, t-1, t, t+1, ...] as without --anvil
            past = [np.load(scans[k]["npy"]).astype(np.float64) for k in idx[:3]]
            obs = [np.load(scans[k]["npy"]).astype(np.float64) for k in idx[3:]]
            fcs = {"persistence": np.stack([past[-1]] * n_leads)}
            fc, t, t_motion = run_opencv(past, n_leads)
            fcs["opencv_dis"] = fc.astype(np.float64)
            compute_ms["opencv_dis"].append(1e3 * t)
            motion_ms["opencv_dis"].append(1e3 * t_motion)
            if not args.no_pysteps:
                with contextlib.redirect_stdout(io.StringIO()):  # pysteps' progress prints
                    py, py_t = run_pysteps(past, n_leads, "pysteps_sprog" in methods,
                                           args.sprog_levels,
                                           older + past if "pysteps_anvil" in methods else None)
                fcs.update(py)
                for m, t in py_t.items():
                    compute_ms[m].append(1e3 * t)
            paths = [scans[k]["path"] for k in idx[:3]]
            try:
                for m, sm in (("raincast", "sprog"), ("raincast_none", "none")):
                    repeat = 1 + args.warm if m == "raincast" else 1
                    fc, _wall, info = run_raincast(args.raincast, paths, leads, tmp, sm,
                                                   repeat=repeat)
                    fcs[m] = fc
                    if repeat > 1:
                        # The last run warm; the first as without --warm.
                        compute_ms["raincast_warm"].append(info["motion_ms"]
                                                           + info["extrapolate_ms"])
                        info = info["first_run"]
                    compute_ms[m].append(info["motion_ms"] + info["extrapolate_ms"])
                    motion_ms[m].append(info["motion_ms"])
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
                    scores["common"][m][j].add(f, o, common, args.threshold, args.fss_window, n)
                    scores["own"][m][j].add(f, o, ok_obs & np.isfinite(f), args.threshold,
                                            args.fss_window, n)
            print(f"\rcase {n + 1}/{len(cases)} ({time.perf_counter() - started:.0f} s)",
                  end="", file=sys.stderr)
        print(file=sys.stderr)

    result = {
        "folder": args.folder,
        "scans": len(scans),
        "step_s": step_s,
        "shape": list(scans[-1]["shape"]),
        "threads": THREADS,
        "start_times_available": all_cases,
        "cases": len(cases) - len(failed),
        "first_start": scans[cases[0][n_past - 1]]["time"].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "last_start": scans[cases[-1][n_past - 1]]["time"].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "failed_cases": failed,
        "threshold_mm_h": args.threshold,
        "fss_window": args.fss_window,
        "sprog_levels": None if "pysteps_sprog" not in methods else args.sprog_levels,
        "leads_min": leads,
        "scores": {mask: {m: [s.summary() for s in per] for m, per in d.items()}
                   for mask, d in scores.items()},
        "compute_ms_median": {m: float(np.median(v)) for m, v in compute_ms.items() if v},
        "motion_ms_median": {m: float(np.median(v)) for m, v in motion_ms.items() if v},
        "leads_ms_median": {m: float(np.median(np.subtract(compute_ms[m], motion_ms[m])))
                            for m, v in motion_ms.items() if v},
    }
    if args.anvil:
        result["past_scans_required"] = n_past
    # Is Raincast's CSI above or below S-PROG's beyond what the choice of
    # cases explains? Paired over the cases, common mask.
    block = dependent_cases([c for c in cases if str(scans[c[n_past - 1]]["time"]) not in failed],
                            n_past, n_leads)
    if "pysteps_sprog" in methods:
        result["raincast_against_sprog"] = {"block_cases": block, "leads": []}
        for j, lead in enumerate(leads):
            r = paired_ratio_interval(scores["common"]["raincast"][j],
                                      scores["common"]["pysteps_sprog"][j], block)
            result["raincast_against_sprog"]["leads"].append(
                None if r is None else
                {"lead_min": lead, "relative": r[0], "low": r[1], "high": r[2], "cases": r[3]})
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(result, fh, indent=1)

    report = [int(x) for x in args.report_leads.split(",")]
    cols = [leads.index(r) for r in report if r in leads]
    shape = scans[-1]["shape"]
    print(f"{args.folder} ({shape[0]} x {shape[1]}): {len(cases) - len(failed)} cases "
          f"({all_cases} available), scan every {step_s} s, {n_leads} leads to "
          f"{args.max_lead} min, {THREADS} thread(s)")
    # The side-by-side table of issue 16.
    print(f"\n| method | motion + all leads to {args.max_lead} min, median ms | CSI "
          f"{args.threshold:g} mm/h at " + " / ".join(f"{leads[j]}" for j in cols) + " min |")
    print("|---|---|---|")
    order = ["opencv_dis", "raincast", "raincast_warm", "raincast_none", "pysteps_lk_sl",
             "pysteps_sprog", "pysteps_anvil", "persistence"]
    for m in [m for m in order if m in methods or m in result["compute_ms_median"]]:
        ms = result["compute_ms_median"].get(m)
        t = "–" if ms is None else f"{ms:.1f}"
        # The warm runs' forecasts are the default run's own.
        sm = "raincast" if m == "raincast_warm" else m
        csi = " / ".join(fmt(result["scores"]["common"][sm][j]["csi_mean"]) for j in cols)
        print(f"| {LABELS[m]} | {t} | {csi} |")
    # Issue 16's speed criteria, as ratios within this one run.
    ms = result["compute_ms_median"]
    if ms.get("raincast") and ms.get("opencv_dis"):
        print(f"\nRaincast (default) / OpenCV DIS time: {ms['raincast'] / ms['opencv_dis']:.2f} "
              "(target <= 1)")
    if ms.get("raincast") and ms.get("pysteps_lk_sl"):
        print(f"pysteps LK+SL / Raincast (default) time: {ms['pysteps_lk_sl'] / ms['raincast']:.1f} "
              "(target >= 40)")
    if ms.get("raincast_warm") and ms.get("opencv_dis"):
        print(f"Raincast (default), warm / OpenCV DIS time: "
              f"{ms['raincast_warm'] / ms['opencv_dis']:.2f} (target <= 1)")
    if ms.get("raincast_warm") and ms.get("pysteps_lk_sl"):
        print(f"pysteps LK+SL / Raincast (default), warm time: "
              f"{ms['pysteps_lk_sl'] / ms['raincast_warm']:.1f} (target >= 40)")
    # Where the time goes: the motion, then all leads (every method's own
    # split, medians over the cases; the leads' part per lead as well).
    print("\n| method | motion, median ms | all leads, median ms | per lead, ms |")
    print("|---|---|---|---|")
    for m in ("opencv_dis", "raincast_none", "raincast"):
        if m in result["motion_ms_median"]:
            mo, le = result["motion_ms_median"][m], result["leads_ms_median"][m]
            print(f"| {LABELS[m]} | {mo:.1f} | {le:.1f} | {le / n_leads:.2f} |")
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
    against = result.get("raincast_against_sprog")
    if against:
        print(f"\nRaincast against pysteps S-PROG, CSI {args.threshold:g} mm/h (mean over cases, "
              f"common mask), paired case by case; 95 % interval from a circular block "
              f"bootstrap, {against['block_cases']} consecutive cases per block (cases whose "
              f"scored hours overlap):")
        print("| lead, min | Raincast / S-PROG − 1 | 95 % interval | cases |")
        print("|---|---|---|---|")
        for j in cols:
            r = against["leads"][j]
            if r is None:
                continue
            interval = (f"{100 * r['low']:+.1f} % … {100 * r['high']:+.1f} %"
                        if r["low"] is not None else
                        f"– (fewer than {MIN_BLOCKS} blocks: too few independent hours)")
            print(f"| {r['lead_min']} | {100 * r['relative']:+.1f} % | {interval} | {r['cases']} |")


if __name__ == "__main__":
    main()
