import sys,re,collections,math
for lab in sys.argv[1:]:
  for d in ["bom_02","mch_20160711","odim_rmi_20210704","fmi_20160928"]:
    try: lines=open(f"/tmp/sprog/{lab}.{d}.err").read().splitlines()
    except: continue
    acc=collections.defaultdict(lambda:[0,0,0,0,0])
    for l in lines:
        m=re.search(r"DIAG level (\d+) in (\S+) (\S+) used (\S+) (\S+)",l)
        if m:
            k=int(m.group(1)); v=[float(x) for x in m.groups()[1:]]
            if any(math.isnan(x) for x in v): continue
            a=acc[k]; a[0]+=1
            for i in range(4): a[i+1]+=v[i]
    print(lab,d," ".join(f"L{k}: in {a[1]/a[0]:.3f}/{a[2]/a[0]:.3f} used {a[3]/a[0]:.3f}/{a[4]/a[0]:.3f}" for k,a in sorted(acc.items())))
