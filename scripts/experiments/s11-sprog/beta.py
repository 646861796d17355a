import sys,re,collections,math
def par(r1,r2):
    if r1!=r1 or r1<=0: return (0,0)
    r1=min(r1,0.999); r2=max(min(max(r2,0),r1),2*r1*r1-1+1e-6); den=1-r1*r1
    return r1*(1-r2)/den,(r2-r1*r1)/den
def co(phi,n):
    p1,p2=phi; cur=(1,0);prev=(0,1)
    for _ in range(n):
        nxt=(p1*cur[0]+p2*prev[0],p1*cur[1]+p2*prev[1]); prev=cur;cur=nxt
    return cur
for lab in sys.argv[1:]:
  for d in ["bom_02","mch_20160711","odim_rmi_20210704","fmi_20160928"]:
    n=12 if d!="bom_02" else 10
    acc=collections.defaultdict(list)
    for l in open(f"/tmp/sprog/{lab}.{d}.err").read().splitlines():
      for m in re.finditer(r"DIAG level (\d+) in (\S+) (\S+) used",l):
        k=int(m.group(1)); r1,r2=float(m.group(2)),float(m.group(3))
        if r1!=r1: r1=0
        if r2!=r2: r2=0
        a,b=co(par(r1,r2),n); acc[k].append((a,b))
    print(lab,d,"60-min (alpha, beta) mean per level:"," ".join(f"L{k} {sum(x[0] for x in v)/len(v):.2f},{sum(x[1] for x in v)/len(v):.2f}" for k,v in sorted(acc.items())))
