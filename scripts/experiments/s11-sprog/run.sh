#!/bin/bash
# usage: run.sh LABEL BIN  (env passed through)
LABEL=$1; BIN=$2
cd /work/wt-sprog
for d in bom/02 mch/20160711 odim/rmi/20210704 fmi/20160928; do
  out=/tmp/sprog/$LABEL.$(echo $d | tr / _).txt
  nice -n 10 $BIN verify ../shared/data/$d > $out 2>/tmp/sprog/$LABEL.$(echo $d | tr / _).err
done
python3 /tmp/sprog/summ.py $LABEL
