import sys,re
lab=sys.argv[1]
res=[]
for d,leads in [("bom_02",(30,60)),("mch_20160711",(30,60)),("odim_rmi_20210704",(30,60)),("fmi_20160928",(30,45))]:
    try: txt=open(f"/tmp/sprog/{lab}.{d}.txt").read()
    except: continue
    vals={}
    for line in txt.splitlines():
        m=re.match(r"\s+(\d+)\s+(\d+) \|(.*)",line)
        if m:
            parts=m.group(3).split("|")
            c1=parts[1].split()
            vals[int(m.group(1))]=(c1[-2],c1[-1])
    res.append(f"{d}: "+" ".join(f"{l}:{vals.get(l,('-','-'))[0]}·{vals.get(l,('-','-'))[1]}" for l in leads))
print(lab, " | ".join(res))
