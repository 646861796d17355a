import sys,re,collections,statistics as st
a,b=sys.argv[1],sys.argv[2]
for d in ["bom_02","mch_20160711","odim_rmi_20210704","fmi_20160928"]:
  def load(lab):
    r={}
    for l in open(f"/tmp/sprog/{lab}.{d}.err").read().split("verify"):
      for m in re.finditer(r"CASE (\S+ \S+ UTC) lead (\d+) m (\d) csi1 (\S+)",l):
        r[(m.group(1),int(m.group(2)),int(m.group(3)))]=float(m.group(4))
    return r
  A,B=load(a),load(b)
  for lead in (30,60,45):
    for meth in (1,2):
      ks=[k for k in A if k[1]==lead and k[2]==meth and k in B]
      if not ks: continue
      diffs=[B[k]-A[k] for k in ks if A[k]==A[k] and B[k]==B[k]]
      n=len(diffs); m=st.mean(diffs); sd=st.stdev(diffs) if n>1 else 0
      print(f"{d} lead {lead} {'extr' if meth==1 else 'rainc'} n={n} mean diff {m:+.4f} sd {sd:.4f} se {sd/n**0.5:.4f} wins {sum(x>0 for x in diffs)} losses {sum(x<0 for x in diffs)}")
