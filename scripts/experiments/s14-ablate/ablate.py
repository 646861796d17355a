"""Ablation: pysteps' S-PROG with its Fourier cascade vs the same S-PROG with a
Laplacian pyramid (Raincast's decomposition), the same LK motion, the same
everything else, and raincast nowcast with the experiment switches (README)."""
import os, sys, json, tempfile
import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import compare_pysteps as cp
import cv2
from pysteps import nowcasts, cascade
from pysteps.cascade import interface as ci, decomposition
from pysteps.motion.lucaskanade import dense_lucaskanade

VARIANT = {}

def lap_decomp(field, bp_filter, mask=None, normalize=True, compute_stats=True, **kw):
    n_levels = len(bp_filter["weights_1d"])
    g = [field.astype(np.float64)]
    for _ in range(n_levels - 1):
        g.append(cv2.pyrDown(g[-1]))
    # full-resolution Gaussian levels G_k = up^k(g_k)
    full = []
    for k, gk in enumerate(g):
        x = gk
        shapes = [a.shape for a in g[:k]][::-1]
        for s in shapes:
            x = cv2.pyrUp(x, dstsize=(s[1], s[0]))
        full.append(x)
    levels = [full[k] - full[k + 1] for k in range(n_levels - 1)] + [full[-1]]
    means, stds, out = [], [], []
    for lv in levels:
        m = lv[mask] if mask is not None else lv
        mu, sd = float(np.mean(m)), float(np.std(m))
        means.append(mu); stds.append(sd)
        out.append((lv - mu) / sd if normalize else lv)
    return {"domain": "spatial", "normalized": normalize, "compact_output": False,
            "cascade_levels": np.stack(out), "means": means, "stds": stds}

ci._cascade_methods["lap"] = (lap_decomp, decomposition.recompose_fft)

NATIVE = []
def lapn_decomp(field, bp_filter, mask=None, normalize=True, compute_stats=True, **kw):
    """As lap_decomp, but mean, std (and, through NATIVE, the correlations)
    from each band at its own resolution, as Raincast computes them."""
    n_levels = len(bp_filter["weights_1d"])
    g = [field.astype(np.float64)]
    for _ in range(n_levels - 1):
        g.append(cv2.pyrDown(g[-1]))
    native = [g[k] - cv2.pyrUp(g[k + 1], dstsize=(g[k].shape[1], g[k].shape[0]))
              for k in range(n_levels - 1)] + [g[-1]]
    NATIVE.append(native)
    full = []
    for k, b in enumerate(native):
        x = b
        for s in [a.shape for a in g[:k]][::-1]:
            x = cv2.pyrUp(x, dstsize=(s[1], s[0]))
        full.append(x)
    means, stds, out = [], [], []
    for nb, lv in zip(native, full):
        mu, sd = float(np.mean(nb)), float(np.std(nb))
        means.append(mu); stds.append(sd)
        out.append((lv - mu) / sd)
    return {"domain": "spatial", "normalized": True, "compact_output": False,
            "cascade_levels": np.stack(out), "means": means, "stds": stds}

ci._cascade_methods["lapn"] = (lapn_decomp, decomposition.recompose_fft)
from pysteps.timeseries import correlation as CORR
_tac = CORR.temporal_autocorrelation
LEVEL = [0]
def native_tac(x, d=0, domain="spatial", x_shape=None, mask=None, use_full_fft=False, window="gaussian", window_radius=np.inf):
    if len(NATIVE) < 3:
        return _tac(x, mask=mask)
    k = LEVEL[0]; LEVEL[0] += 1
    fr = [NATIVE[-3][k], NATIVE[-2][k], NATIVE[-1][k]]
    a = fr[-1].ravel()
    return [float(np.corrcoef(a, fr[-2].ravel())[0, 1]), float(np.corrcoef(a, fr[-3].ravel())[0, 1])]

from pysteps.timeseries import autoregression as AR
_real_roots = AR.adjust_lag2_corrcoef2
def rc_bound(g1, g2):
    # Raincast's ar2_params: r1 capped at 0.999, r2 in [0, r1] and above 2 r1^2 - 1
    if not (g1 > 0):
        return g2
    g1 = min(g1, 0.999)
    return max(min(max(g2, 0.0), g1), 2 * g1 * g1 - 1 + 1e-4)

def run(frames, n_leads, variant, paths=None, raincast=None, leads=None, tmp=None):
    dbr = cp.to_dbr(np.stack(frames).astype(np.float64))
    velocity = dense_lucaskanade(dbr)
    filled = dbr.copy(); filled[~np.isfinite(filled)] = -15.0
    out = {}
    for name, kw in variant.items():
        if name.startswith("rc"):
            env = dict(kw or {})
            if env.pop("pym", False):
                prefix = os.path.join(tmp, "pym")
                velocity[0].astype("<f4").tofile(prefix + "_u.f32")
                velocity[1].astype("<f4").tofile(prefix + "_v.f32")
                env["RC_MOTION_NPY"] = prefix
            out[name] = cp.run_raincast(raincast, paths, leads, tmp, "sprog", env=env)[0]
            continue
        kw = dict(kw)
        AR.adjust_lag2_corrcoef2 = kw.pop("bound", _real_roots)
        NATIVE.clear(); LEVEL[0] = 0
        CORR.temporal_autocorrelation = native_tac if kw.get("decomp_method") == "lapn" else _tac
        fc = nowcasts.get_method("sprog")(filled[-3:], velocity, n_leads, precip_thr=-10.0,
                                          ar_order=2, **kw)
        out[name] = cp.from_dbr(fc)
    return out

def main():
    folder, raincast = sys.argv[1], sys.argv[2]
    max_cases = int(os.environ.get("MAX_CASES", 24))
    variants = {"fft6": {}, "lap": {"decomp_method": "lap"}, "lapn": {"decomp_method": "lapn"}, "rc": {}, "rc_pym": {"pym": 1},
                "rc_pym_rr": {"pym": 1, "RC_AR": "rr"}, "rc_pym_fill": {"pym": 1, "RC_FILL": "min", "RC_MASK": "all"},
                "rc_pym_rr_fill": {"pym": 1, "RC_AR": "rr", "RC_FILL": "min", "RC_MASK": "all"},
                "rc_pym_rr_fillonly": {"pym": 1, "RC_AR": "rr", "RC_FILLONLY": "min"},
                "rc_pym_rr_maskall": {"pym": 1, "RC_AR": "rr", "RC_MASK": "all"},
                "rc_pym_rr_cap": {"pym": 1, "RC_AR": "rr", "RC_R1CAP": "0.99999"},
                "rc_pym_full": {"pym": 1, "RC_FULLSTATS": "1"},
                "rc_pym_rr_full": {"pym": 1, "RC_AR": "rr", "RC_FULLSTATS": "1"},
                "rc_pym_rr_fo_full": {"pym": 1, "RC_AR": "rr", "RC_FILLONLY": "min", "RC_FULLSTATS": "1"},
                "rc_rr": {"RC_AR": "rr"},
                "rc_rr_fo": {"RC_AR": "rr", "RC_FILLONLY": "min"},
                "rc_rr_fo_full": {"RC_AR": "rr", "RC_FILLONLY": "min", "RC_FULLSTATS": "1"},
                "rc_full": {"RC_FULLSTATS": "1"}}
    if os.environ.get("VARIANTS"):
        variants = {k: v for k, v in variants.items() if k in os.environ["VARIANTS"].split(",")}
    tmp = tempfile.mkdtemp()
    scans = cp.prep_all(raincast, cp.list_scans(folder), tmp)
    scans.sort(key=lambda s: s["time"])
    times = np.array([s["time"].timestamp() for s in scans])
    step = float(np.median(np.diff(times)))
    n_leads = int(round(3600 / step))
    cases = cp.cases_of(scans, step, n_leads)
    if len(cases) > max_cases:
        idx = np.linspace(0, len(cases) - 1, max_cases).round().astype(int)
        cases = [cases[i] for i in idx]
    j30, j60 = int(round(1800 / step)) - 1, n_leads - 1
    res = {v: {30: [], 60: []} for v in variants}
    import contextlib, io
    for c, case in enumerate(cases):
        frames = [np.load(scans[k]["npy"]) for k in case[:3]]
        obs = [np.load(scans[k]["npy"]) for k in case[3:]]
        with contextlib.redirect_stdout(io.StringIO()):
            out = run(frames, n_leads, variants, [scans[k]["path"] for k in case[:3]], raincast,
                      [int((j + 1) * step // 60) for j in range(n_leads)], tmp)
        for lead, j in ((30, j30), (60, j60)):
            ob = obs[j]
            mask = np.isfinite(ob)
            for v in variants:
                mask &= np.isfinite(out[v][j])
            for v in variants:
                f = (out[v][j] >= 1.0) & mask; o = (ob >= 1.0) & mask
                a, b, cc = np.sum(f & o), np.sum(f & ~o), np.sum(~f & o)
                if a + b + cc:
                    res[v][lead].append(a / (a + b + cc))
        print(f"\rcase {c+1}/{len(cases)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    for v in variants:
        print(f"{os.path.basename(folder.rstrip('/'))} {v}: " +
              " / ".join(f"{np.mean(res[v][l]):.3f}" for l in (30, 60)) + f"  (n={len(res[v][30])})")

main()
