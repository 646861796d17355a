#!/usr/bin/env python3
"""Experiment (issue 16, session 31): where Raincast's short-lead gap to
pysteps' S-PROG lies.

A numpy replica of pysteps' S-PROG (``pysteps.nowcasts.sprog``, 2 lags,
no noise) whose parts can be swapped for Raincast's, scored on the same
cases as ``compare_pysteps.py`` (CSI at 1 mm/h, mean over cases, on the
cells every method knows):

* ``sprog``: pysteps' own S-PROG (6 FFT levels), pysteps' LK motion;
* ``rep_fft``: the replica with pysteps' FFT cascade: must equal ``sprog``
  (it did, to the fourth decimal, on RMI 2021-07-04);
* ``rep_pyr``: the replica with a Laplacian pyramid (5-tap binomial
  REDUCE/EXPAND, levels while the short side stays >= 16 cells, as
  Raincast's ``sprog::pyramid_levels``);
* ``rep_pyr_rc``: the pyramid replica with Raincast's motion (dumped by
  ``raincast nowcast`` under ``RC_DUMP_MOTION``, in this commit only),
  the lag correlations over the cells known in all three (advected)
  fields, the quantile matching over the latest field's known cells and
  the advection in mm/h, as Raincast does;
* ``rep_pyr_rc_all``: the same with the correlations over every cell;
* ``rep_fft_rc``: pysteps' FFT cascade with Raincast's other parts (as
  ``rep_pyr_rc``): what a Fourier cascade could give Raincast;
* ``raincast``: ``raincast nowcast`` itself.

Usage (pysteps' venv, a release build of this commit):

    RAINCAST=$CARGO_TARGET_DIR/release/raincast /tmp/pysteps-venv/bin/python \\
        scripts/sprog_replica.py ../shared/data/odim/rmi/20210704 --steps 6 --report 1,3,6 --max-cases 12
"""
import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile

import numpy as np
from scipy.ndimage import convolve1d

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_pysteps as cp  # noqa: E402

K5 = np.array([1, 4, 6, 4, 1], float) / 16


def reduce_(g):
    b = convolve1d(convolve1d(g, K5, axis=0, mode="reflect"), K5, axis=1, mode="reflect")
    return b[::2, ::2]


def expand(g, shape):
    # Normalised convolution of the zero-interleaved samples: 4 × the
    # binomial filter inside, and a constant stays that constant at the
    # edges too (a plain "reflect" of the interleaved array breaks the
    # parity there and leaves edge artefacts of the size of the field's
    # values in every band, identical in all three frames).
    up = np.zeros(shape)
    up[::2, ::2] = g
    w = np.zeros(shape)
    w[::2, ::2] = 1.0

    def blur(x):
        return convolve1d(convolve1d(x, K5, axis=0, mode="constant"), K5, axis=1,
                          mode="constant")
    return blur(up) / blur(w)


def n_bands(rows, cols):
    k = 0
    while min(rows, cols) >> (k + 1) >= 16:
        k += 1
    return k


def pyramid(img, k):
    gs = [img]
    for _ in range(k):
        gs.append(reduce_(gs[-1]))
    return [gs[i] - expand(gs[i + 1], gs[i].shape) for i in range(k)] + [gs[k]]


def unpyramid(bands):
    r = bands[-1]
    for b in reversed(bands[:-1]):
        r = expand(r, b.shape) + b
    return r


def replica(dbr, vel, steps, report, decomp, known_corr=False, raincast_like=False):
    """S-PROG on ``dbr`` (3 frames, NaN = no data), one field per step in
    ``report`` (dBR, NaN where unknown)."""
    from pysteps import extrapolation
    from pysteps.nowcasts.utils import compute_percentile_mask
    from pysteps.postprocessing import probmatching
    from pysteps.timeseries import autoregression, correlation

    sl = extrapolation.get_method("semilagrangian")
    filled = np.where(np.isfinite(dbr), dbr, -15.0)
    precip = filled.copy()
    raw = dbr.copy()
    for i in range(2):
        precip[i] = sl(precip[i], vel, 2 - i, "min", allow_nonfinite_values=True)[-1]
        raw[i] = sl(raw[i], vel, 2 - i, "min", allow_nonfinite_values=True)[-1]
    known = np.isfinite(raw).all(axis=0)
    latest_known = np.isfinite(dbr[2])
    for i in range(3):
        precip[i][~np.isfinite(precip[i])] = np.nanmin(precip[i])
    if decomp == "fft":
        from pysteps.cascade.bandpass_filters import filter_gaussian
        from pysteps.cascade.decomposition import decomposition_fft
        bp = filter_gaussian(precip.shape[1:], 6)
        dec = [decomposition_fft(precip[i], bp, normalize=True, compute_stats=True)
               for i in range(3)]
        means, stds = dec[2]["means"], dec[2]["stds"]
        z = [[dec[t]["cascade_levels"][k] for t in range(3)] for k in range(len(means))]

        def recompose(zs):
            return sum(zs[k] * stds[k] + means[k] for k in range(len(zs)))
    else:
        k_bands = n_bands(*precip.shape[1:])
        bands = [pyramid(precip[t], k_bands) for t in range(3)]
        z, means, stds = [], [], []
        for k in range(k_bands + 1):
            zz = []
            for t in range(3):
                b = bands[t][k]
                m, s = b.mean(), b.std()
                zz.append((b - m) / s if s > 1e-6 else b * 0)
            means.append(bands[2][k].mean())
            stds.append(bands[2][k].std())
            z.append(zz)

        def recompose(zs):
            return unpyramid([zs[k] * stds[k] + means[k] for k in range(len(zs))])
    phis = []
    for k, zk in enumerate(z):
        mask = None
        if known_corr:
            f = 2 ** k if decomp == "pyr" else 1
            mask = known[::f, ::f][: zk[0].shape[0], : zk[0].shape[1]]
        g = correlation.temporal_autocorrelation(np.stack(zk), mask=mask)
        g[1] = autoregression.adjust_lag2_corrcoef2(g[0], g[1])
        phis.append(autoregression.estimate_ar_params_yw(g))
    war = np.mean(precip[2] >= -10.0)
    state = [[zk[1], zk[2]] for zk in z]
    out = {}
    for n in range(1, steps + 1):
        cur = []
        for k in range(len(z)):
            a, b = state[k]
            nz = phis[k][0] * b + phis[k][1] * a
            state[k] = [b, nz]
            cur.append(nz)
        if n not in report:
            continue
        r = recompose(cur)
        if raincast_like:
            # Matched over the latest field's known cells, advected in mm/h.
            rr = np.full(r.shape, np.nan)
            rr[latest_known] = probmatching.nonparam_match_empirical_cdf(
                r[latest_known], precip[2][latest_known])
            adv = sl(cp.from_dbr(rr), vel, n, allow_nonfinite_values=True)[-1]
            with np.errstate(divide="ignore", invalid="ignore"):
                adv = np.where(adv >= 0.1, 10 * np.log10(adv),
                               np.where(np.isfinite(adv), -15.0, np.nan))
        else:
            m = compute_percentile_mask(r, war)
            r[~m] = np.nanmin(filled)
            r = probmatching.nonparam_match_empirical_cdf(r, precip[2])
            adv = sl(r, vel, n, allow_nonfinite_values=True)[-1]
        out[n] = adv
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--steps", type=int, default=6, help="scan steps forecast")
    ap.add_argument("--report", default="1,3,6", help="steps scored")
    ap.add_argument("--max-cases", type=int, default=12)
    args = ap.parse_args()
    from pysteps import nowcasts
    from pysteps.motion.lucaskanade import dense_lucaskanade

    rc = os.environ["RAINCAST"]
    report = [int(x) for x in args.report.split(",")]
    tmp = tempfile.mkdtemp(prefix="sprog-replica-")
    scans = cp.prep_all(rc, cp.list_scans(args.folder), tmp)
    times = [s["time"].timestamp() for s in scans]
    step = int(round(np.median(np.diff(times))))
    cases = cp.cases_of(scans, step, args.steps)
    if len(cases) > args.max_cases:
        pick = np.linspace(0, len(cases) - 1, args.max_cases).round().astype(int)
        cases = [cases[i] for i in sorted(set(pick))]
    variants = ["sprog", "rep_fft", "rep_pyr", "rep_pyr_rc", "rep_pyr_rc_all", "rep_fft_rc",
                "raincast"]
    csi = {v: {n: [] for n in report} for v in variants}
    for c, idx in enumerate(cases):
        past = [np.load(scans[k]["npy"]).astype(np.float64) for k in idx[:3]]
        obs = [np.load(scans[k]["npy"]).astype(np.float64) for k in idx[3:]]
        paths = [scans[k]["path"] for k in idx[:3]]
        out = tempfile.mkdtemp(dir=tmp)
        leads = [step // 60 * n for n in report]
        subprocess.run([rc, "nowcast", *paths, "--leads", ",".join(map(str, leads)),
                        "--out", out], env=dict(os.environ, RC_DUMP_MOTION=out),
                       check=True, capture_output=True)
        rc_vel = np.stack([np.load(f"{out}/u.npy"), np.load(f"{out}/v.npy")]).astype(np.float64)
        fcs = {"raincast": {n: np.load(f"{out}/lead_{step // 60 * n:03d}.npy").astype(np.float64)
                            for n in report}}
        with contextlib.redirect_stdout(io.StringIO()):
            dbr = cp.to_dbr(np.stack(past))
            vel = dense_lucaskanade(dbr)
            filled = np.where(np.isfinite(dbr), dbr, -15.0)
            sp = nowcasts.get_method("sprog")(filled, vel, args.steps, n_cascade_levels=6,
                                              precip_thr=-10.0, ar_order=2)
            fcs["sprog"] = {n: cp.from_dbr(sp[n - 1]) for n in report}
            for name, kw in (("rep_fft", dict(vel=vel, decomp="fft")),
                             ("rep_pyr", dict(vel=vel, decomp="pyr")),
                             ("rep_pyr_rc", dict(vel=rc_vel, decomp="pyr", known_corr=True,
                                                 raincast_like=True)),
                             ("rep_pyr_rc_all", dict(vel=rc_vel, decomp="pyr",
                                                     raincast_like=True)),
                             ("rep_fft_rc", dict(vel=rc_vel, decomp="fft", known_corr=True,
                                                 raincast_like=True))):
                r = replica(dbr, steps=args.steps, report=report, **kw)
                fcs[name] = {n: cp.from_dbr(r[n]) for n in report}
        for n in report:
            o = obs[n - 1]
            common = np.isfinite(o)
            for v in variants:
                common &= np.isfinite(fcs[v][n])
            for v in variants:
                f = (fcs[v][n] >= 1.0) & common
                ob = (o >= 1.0) & common
                a, b, m = np.sum(f & ob), np.sum(f & ~ob), np.sum(~f & ob)
                if a + b + m:
                    csi[v][n].append(a / (a + b + m))
        print(f"\rcase {c + 1}/{len(cases)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    print(f"{args.folder}: {len(cases)} cases, CSI 1 mm/h at "
          + ", ".join(f"{step // 60 * n} min" for n in report))
    for v in variants:
        print(f"{v:<16}" + " ".join(f"{np.mean(csi[v][n]):.4f}" for n in report))


if __name__ == "__main__":
    main()
