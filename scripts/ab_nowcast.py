#!/usr/bin/env python3
"""Two builds of ``raincast nowcast`` timed against each other, alternated.

On a shared, noisy machine the same binary's time moves by a third within
an hour (docs/PERFORMANCE.md, "Measurement conditions"), so two builds timed
one after the other cannot be told apart by a few per cent. This script runs
build A and build B on the same three scans of each shared day, one after
the other in turn (A B, then B A, ...), and compares the medians of their
own ``motion_ms + extrapolate_ms`` (one thread, without file I/O, as
``scripts/compare_pysteps.py`` takes it). Each build's first lead files are
also compared byte for byte: a build setting must not change the output.

    scripts/ab_nowcast.py A_BINARY B_BINARY [--rounds 21] [--days bom,mch,rmi,fmi,opera]

Needs ``../shared/data`` beside the repository (or ``--data``). Not part of
CI (a few minutes).
"""

import argparse
import filecmp
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# Day -> (file pattern below the data folder, index of the first of the three
# scans, leads in minutes: every scan step to 60 min; OPERA every 15 min).
DAYS = {
    "bom": ("bom/02/*.nc", 20, range(6, 61, 6)),
    "mch": ("mch/20160711/*.gif", 20, range(5, 61, 5)),
    "rmi": ("odim/rmi/20210704/*.hdf", 10, range(5, 61, 5)),
    "fmi": ("fmi/20160928/*.pgm*", 4, range(5, 61, 5)),
    "opera": ("odim/opera/20180824/*.hdf", 0, range(15, 61, 15)),
}


def run(binary, files, leads, out):
    res = subprocess.run(
        [binary, "nowcast", *files, "--leads", leads, "--out", out, "--json"],
        capture_output=True, text=True,
    )
    if res.returncode != 0:
        sys.exit(f"{binary} nowcast {' '.join(files)} failed: {res.stderr.strip()}")
    info = json.loads(res.stdout.strip().splitlines()[-1])
    return info["motion_ms"] + info["extrapolate_ms"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="build A (the reference)")
    ap.add_argument("b", help="build B")
    ap.add_argument("--rounds", type=int, default=21,
                    help="runs of each build per day (OPERA: a third of it, at least 3)")
    ap.add_argument("--days", default=",".join(DAYS), help="comma-separated: " + ", ".join(DAYS))
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data"))
    args = ap.parse_args()
    for name in args.days.split(","):
        if name not in DAYS:
            sys.exit(f"--days: unknown day {name!r}; days are {', '.join(DAYS)}")
        pattern, first, leads = DAYS[name]
        files = sorted(glob.glob(os.path.join(args.data, pattern)))[first:first + 3]
        if len(files) < 3:
            sys.exit(f"{name}: fewer than 3 scans match {pattern} below {args.data}")
        leads = ",".join(str(x) for x in leads)
        n = args.rounds if name != "opera" else max(3, args.rounds // 3)
        times = {"a": [], "b": []}
        with tempfile.TemporaryDirectory(prefix="ab-nowcast-") as tmp:
            outs = {k: os.path.join(tmp, k) for k in times}
            for i in range(n):
                order = ("a", "b") if i % 2 == 0 else ("b", "a")
                for k in order:
                    times[k].append(run(getattr(args, k), files, leads, outs[k]))
            lead_files = sorted(os.listdir(outs["a"]))
            same = all(filecmp.cmp(os.path.join(outs["a"], f), os.path.join(outs["b"], f),
                                   shallow=False) for f in lead_files)
        ma, mb = statistics.median(times["a"]), statistics.median(times["b"])
        print(f"{name}: A {ma:.1f} ms, B {mb:.1f} ms (medians of {n} runs each, "
              f"alternated; fastest {min(times['a']):.1f} / {min(times['b']):.1f}), "
              f"B / A {mb / ma:.3f}; {len(lead_files)} lead files "
              f"{'identical' if same else 'DIFFER'}", flush=True)


if __name__ == "__main__":
    main()
