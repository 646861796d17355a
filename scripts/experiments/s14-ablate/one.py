import os, sys, io, contextlib, json
sys.argv = ["x", os.environ.get("DAY", "../shared/data/bom/02"), os.environ["RAINCAST"]]
exec(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ablate.py")).read().replace("\nmain()\n", "\n"))
folder, raincast = sys.argv[1], sys.argv[2]
tmp = "/tmp/one"; os.makedirs(tmp, exist_ok=True)
scans = cp.prep_all(raincast, cp.list_scans(folder), tmp)
scans.sort(key=lambda s: s["time"])
times = np.array([s["time"].timestamp() for s in scans]); step = 360.0
cases = cp.cases_of(scans, step, 10)
idx = np.linspace(0, len(cases) - 1, 24).round().astype(int)
cases = [cases[i] for i in idx]
sel = [int(a) for a in os.environ.get("CASES", "12").split(",")]
for ci_ in sel:
    case = cases[ci_]
    frames = [np.load(scans[k]["npy"]) for k in case[:3]]
    obs = [np.load(scans[k]["npy"]) for k in case[3:]]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        out = run(frames, 10, {"lapn": {"decomp_method": "lapn"}, "rc_pym_rr": {"pym": 1, "RC_AR": "rr"}},
                  [scans[k]["path"] for k in case[:3]], raincast, [6*(j+1) for j in range(10)], tmp)
    txt = buf.getvalue()
    print("case", ci_, scans[case[2]]["time"])
    print("\n".join(l for l in txt.splitlines() if "|" in l)[:3000])
    for j in (0, 1, 4, 9):
        ob = obs[j]; m = np.isfinite(ob) & np.isfinite(out["lapn"][j]) & np.isfinite(out["rc_pym_rr"][j])
        row = []
        for v in ("lapn", "rc_pym_rr"):
            f = (out[v][j] >= 1) & m; o = (ob >= 1) & m
            a, b, c = np.sum(f & o), np.sum(f & ~o), np.sum(~f & o)
            row.append(f"{v}: csi {a/(a+b+c):.3f} wet {f.sum()} fa {b} miss {c}")
        print(j, "obs wet", ((ob >= 1) & m).sum(), " | ".join(row))
    last = frames[-1]
    for thr in (0.1, 1.0):
        fin = np.isfinite(last)
        print("thr", thr, "latest: wet", int(np.sum(last[fin] >= thr)), "finite", int(fin.sum()), "frac %.4f" % np.mean(last[fin] >= thr))
        for v in ("lapn", "rc_pym_rr"):
            f = out[v][0]; fin2 = np.isfinite(f)
            print("   ", v, "lead1 wet", int(np.sum(f[fin2] >= thr)), "finite", int(fin2.sum()), "frac %.4f" % np.mean(f[fin2] >= thr))
    qs = [50, 80, 83, 85, 87, 88, 90, 95, 99, 99.9]
    print("q       ", qs)
    print("latest  ", np.round(np.percentile(last[np.isfinite(last)], qs), 2))
    for v in ("lapn", "rc_pym_rr"):
        f = out[v][0]
        print(v.ljust(8), np.round(np.percentile(f[np.isfinite(f)], qs), 2))
