// Raincast map page: the mosaic of every radar as XYZ tiles from this
// server's RainViewer-compatible API (/public/weather-maps.json and
// /v2/radar/...), animating through the past hour and the nowcast with a
// time slider, over the embedded offline basemap (/v1/basemap: coastlines,
// borders, lakes, towns) or the operator's online basemap ([api]
// basemap_url, from /v1/map-settings); the point forecast on click. Without
// basemap_url the page talks only to this server.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const slider = $('time-slider');
  const label = $('frame-label');
  const panel = $('forecast');
  const statusEl = $('status');
  const playBtn = $('play');
  // Raincast's legend colours (tile scheme 1), smoothed.
  const TILE_OPTIONS = '/256/{z}/{x}/{y}/1/1_0.png';
  const RAIN_OPACITY = 0.85;
  const PAST_S = 3600;

  const map = L.map('map', { zoomSnap: 0.25, maxZoom: 12 });
  map.attributionControl.setPrefix('Leaflet');
  map.attributionControl.addAttribution('Rain: Raincast');
  map.setView([47, 8], 6);
  map.createPane('basemap').style.zIndex = 250;
  map.createPane('rain').style.zIndex = 350;
  map.createPane('labels').style.zIndex = 450;
  map.getPane('labels').style.pointerEvents = 'none';

  const state = {
    radars: [], radar: null, frames: [], index: 0, playing: true, generated: null, key: null,
    layers: new Map(), outlines: null, clicked: null, scale: [], timer: null, basemap: null, towns: [],
  };
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  const hhmm = (t) => new Date(t).toISOString().slice(11, 16) + ' UTC';

  async function getJSON(url, cache) {
    const r = await fetch(url, { headers: { accept: 'application/json' }, cache: cache || 'default' });
    const body = await r.json().catch(() => null);
    if (!r.ok) {
      const e = new Error(body && body.detail ? body.detail : r.status + ' ' + r.statusText);
      e.status = r.status;
      e.problem = body;
      throw e;
    }
    return body;
  }

  function frameLabel(f) {
    if (f.kind === 'observed') return 'Observed ' + hhmm(f.time);
    return 'Forecast +' + f.lead + ' min · ' + hhmm(f.time);
  }

  // One tile layer per frame; hidden ones stay on the map at opacity 0 so
  // the browser has every frame's tiles when the animation reaches it. The
  // shown frame's layer goes on the map at once, the others one after
  // another in the animation's order, each when the one before has loaded:
  // on a slow link (or a slow server) the frame in view is never queued
  // behind the tiles of three dozen hidden frames.
  function show(i) {
    if (!state.frames.length) return;
    state.index = Math.max(0, Math.min(state.frames.length - 1, i));
    const f = state.frames[state.index];
    const shownLayer = state.layers.get(f.url);
    if (shownLayer && !map.hasLayer(shownLayer)) shownLayer.addTo(map);
    for (const [url, layer] of state.layers) layer.setOpacity(url === f.url ? RAIN_OPACITY : 0);
    slider.value = String(state.index);
    label.textContent = frameLabel(f);
    label.className = f.kind;
  }

  // Calls fn once the layer has loaded its tiles in view, or after a few
  // seconds if it has not (a layer with no tile in view never loads).
  function whenLoaded(layer, fn) {
    let done = false;
    const go = () => { if (!done) { done = true; clearTimeout(t); fn(); } };
    const t = setTimeout(go, 5000);
    layer.once('load', go);
  }

  // Puts the frames' layers on the map one after another, from the shown
  // frame on in the animation's order, each once the one before has loaded.
  // A newer frame list restarts the chain.
  function prefetch() {
    const token = (state.prefetchToken || 0) + 1;
    state.prefetchToken = token;
    const step = () => {
      if (state.prefetchToken !== token) return;
      const n = state.frames.length;
      for (let k = 1; k < n; k++) {
        const layer = state.layers.get(state.frames[(state.index + k) % n].url);
        if (!layer || map.hasLayer(layer)) continue;
        whenLoaded(layer, step);
        layer.addTo(map);
        return;
      }
    };
    const shown = state.frames.length ? state.layers.get(state.frames[state.index].url) : null;
    if (shown && shown.isLoading()) whenLoaded(shown, step);
    else step();
  }

  function schedule() {
    clearTimeout(state.timer);
    if (!state.playing || !state.frames.length) return;
    const f = state.frames[state.index];
    const last = state.index === state.frames.length - 1;
    const now = f.kind === 'observed' && state.frames[state.index + 1] && state.frames[state.index + 1].kind === 'forecast';
    state.timer = setTimeout(() => {
      show(last ? 0 : state.index + 1);
      schedule();
    }, last ? 1800 : now ? 1200 : 500);
  }

  function setPlaying(p) {
    state.playing = p;
    playBtn.textContent = p ? '❚❚' : '▶';
    schedule();
  }

  // A tile of a frame that is gone (404: a nowcast replaced more than two
  // minutes ago, or a frame that aged out of the two hours) makes the page
  // fetch the frame list again, at most once every few seconds, past the
  // browser's cache (the list it holds may be the one naming that frame).
  function tileFailed() {
    const now = Date.now();
    if (state.refetching || now - (state.refetched || 0) < 3000) return;
    state.refetching = true;
    state.refetched = now;
    loadFrames('no-cache').finally(() => { state.refetching = false; });
  }

  async function loadFrames(cache) {
    let m;
    try {
      m = await getJSON('/public/weather-maps.json', cache);
    } catch (e) {
      statusEl.textContent = e.message;
      return;
    }
    // The last hour of scans before the newest (the list covers two).
    const newest = m.radar.past.length ? m.radar.past[m.radar.past.length - 1].time : 0;
    const past = m.radar.past.filter((f) => f.time >= newest - PAST_S);
    const key = past.concat(m.radar.nowcast).map((f) => f.path).join(',');
    const base = past.length ? past[past.length - 1].time : null;
    statusEl.textContent = (base ? 'latest scan ' + hhmm(base * 1000) : 'no scan') + ' · ' + m.radar.nowcast.length + ' forecast frames';
    if (key === state.key) return;
    state.key = key;
    const shown = state.frames[state.index];
    // Tiles from this page's own origin (a RainViewer client would use m.host).
    state.frames = past.map((f) => ({ url: f.path + TILE_OPTIONS, time: f.time * 1000, kind: 'observed' }))
      .concat(m.radar.nowcast.map((f) => ({
        url: f.path + TILE_OPTIONS, time: f.time * 1000, kind: 'forecast',
        lead: base ? Math.round((f.time - base) / 60) : 0,
      })));
    const wanted = new Set(state.frames.map((f) => f.url));
    for (const [url, layer] of state.layers) {
      if (!wanted.has(url)) { layer.remove(); state.layers.delete(url); }
    }
    for (const f of state.frames) {
      if (state.layers.has(f.url)) continue;
      const layer = L.tileLayer(f.url, { pane: 'rain', opacity: 0, className: 'rain-tiles', maxNativeZoom: 12, maxZoom: 12, keepBuffer: 1 });
      layer.frameUrl = f.url;
      layer.on('tileerror', tileFailed);
      state.layers.set(f.url, layer);
    }
    let start = Math.max(0, past.length - 1);
    // Paused on a frame: stay on the same lead (or observed time).
    if (!state.playing && shown) {
      const same = state.frames.findIndex((f) => f.kind === shown.kind && (f.kind === 'forecast' ? f.lead === shown.lead : f.time === shown.time));
      if (same >= 0) start = same;
    }
    slider.max = String(Math.max(0, state.frames.length - 1));
    show(start);
    prefetch();
    schedule();
  }

  // The skill panel: the selected radar's live skill over the last 24 h
  // (CSI at 1 mm/h per lead, Raincast against persistence, and the cases).
  async function loadSkill() {
    const r = state.radar;
    const box = $('skill');
    if (!r || !box) return;
    let v;
    try {
      v = await getJSON('/v1/radars/' + encodeURIComponent(r.id) + '/skill?window=24h');
    } catch (e) {
      box.innerHTML = '<b>Live skill</b> <span class="hint">' + esc(e.message) + '</span>';
      box.dataset.state = 'error';
      return;
    }
    if (state.radar !== r) return;
    const csi1 = (m) => { const c = m.csi.find((x) => x.threshold_mm_h === 1); return c && c.csi != null ? c.csi.toFixed(2) : '–'; };
    const leads = v.leads.filter((l) => l.raincast.cases > 0);
    if (!leads.length) {
      box.innerHTML = '<b>Live skill · ' + esc(r.name) + '</b> <span class="hint">scoring starts when the first nowcasts come true</span>';
      box.dataset.state = 'empty';
      return;
    }
    const rows = leads.map((l) => '<tr><td>+' + l.lead_min + '</td><td>' + csi1(l.raincast) + '</td><td>' + csi1(l.persistence) +
      '</td><td>' + l.raincast.cases + '</td></tr>').join('');
    box.innerHTML = '<b>Live skill · ' + esc(r.name) + ', last 24 h</b> <span class="hint">CSI at 1 mm/h</span>' +
      '<table><thead><tr><th>lead</th><th>Raincast</th><th>persist.</th><th>cases</th></tr></thead><tbody>' + rows + '</tbody></table>';
    box.dataset.state = 'ready';
  }

  // Every radar at once: the coverage outlines and sites of all of them;
  // the menu zooms to one (or all) and picks the radar of the skill panel.
  function unionBounds(list) {
    const b = list.filter((r) => r.bounds).map((r) => r.bounds);
    if (!b.length) return null;
    return {
      west: Math.min(...b.map((x) => x.west)), south: Math.min(...b.map((x) => x.south)),
      east: Math.max(...b.map((x) => x.east)), north: Math.max(...b.map((x) => x.north)),
    };
  }

  function drawRadars() {
    if (state.outlines) state.outlines.remove();
    const g = L.layerGroup();
    for (const r of state.radars) {
      if (r.coverage) {
        L.geoJSON(r.coverage, { pane: 'labels', style: { color: '#4a5160', weight: 1.5, fill: false, dashArray: '6 4' }, interactive: false }).addTo(g);
      }
      if (r.location) {
        L.circleMarker([r.location.lat, r.location.lon], { pane: 'labels', radius: 4, color: '#1d2230', weight: 2, fillColor: '#fff', fillOpacity: 1 })
          .bindTooltip(esc(r.name)).addTo(g);
      }
    }
    state.outlines = g.addTo(map);
  }

  function select(id) {
    const list = id === '*' ? state.radars : state.radars.filter((x) => x.id === id);
    const b = unionBounds(list);
    if (b) map.fitBounds([[b.south, b.west], [b.north, b.east]], { padding: [20, 20] });
    state.radar = id === '*' ? (state.radars.find((r) => r.status !== 'no_data') || state.radars[0]) : list[0];
    loadSkill();
  }

  // The basemap: the operator's online tiles, or the embedded one as
  // vector layers (lake water, coastlines, borders, towns by zoom).
  async function loadBasemap() {
    let settings = { basemap_url: null, basemap_attribution: '' };
    try { settings = await getJSON('/v1/map-settings'); } catch (e) { /* embedded basemap */ }
    if (settings.basemap_url) {
      L.tileLayer(settings.basemap_url, { pane: 'basemap', className: 'basemap-tiles', maxZoom: 12 }).addTo(map);
      return;
    }
    const u = unionBounds(state.radars) || { west: 0, south: 40, east: 16, north: 56 };
    const pad = 3;
    const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
    const q = { west: clamp(u.west - pad, -180, 179), south: clamp(u.south - pad, -90, 89), east: clamp(u.east + pad, -179, 180), north: clamp(u.north + pad, -89, 90) };
    q.east = Math.min(q.east, q.west + 90);
    q.north = Math.min(q.north, q.south + 90);
    let gj;
    try {
      gj = await getJSON('/v1/basemap?west=' + q.west.toFixed(3) + '&south=' + q.south.toFixed(3) + '&east=' + q.east.toFixed(3) + '&north=' + q.north.toFixed(3));
    } catch (e) {
      statusEl.textContent = 'basemap: ' + e.message;
      return;
    }
    const renderer = L.canvas({ pane: 'basemap' });
    const styles = {
      lake: { color: '#5b8fc4', weight: 1, fillColor: '#b9d3ea', fillOpacity: 1 },
      coast: { color: '#4f6f99', weight: 1.2 },
      border: { color: '#8f6a8f', weight: 1, dashArray: '4 3' },
    };
    const g = L.layerGroup();
    for (const f of gj.features) {
      const k = f.properties.kind;
      if (k === 'town') continue;
      const ll = f.geometry.coordinates.map((c) => [c[1], c[0]]);
      const o = Object.assign({ renderer, interactive: false, pane: 'basemap' }, styles[k]);
      (k === 'lake' ? L.polygon(ll, o) : L.polyline(ll, o)).addTo(g);
    }
    state.towns = gj.features.filter((f) => f.properties.kind === 'town').map((f) => {
      const [lon, lat] = f.geometry.coordinates;
      const m = L.marker([lat, lon], {
        pane: 'labels', interactive: false, keyboard: false,
        icon: L.divIcon({ className: 'town-label', html: '<span class="dot"></span>' + esc(f.properties.name), iconSize: null, iconAnchor: [3, 7] }),
      });
      m.population = f.properties.population;
      return m;
    });
    state.basemap = g.addTo(map);
    map.attributionControl.addAttribution(esc(gj.attribution || settings.basemap_attribution));
    placeTowns();
  }

  // Fewer, larger towns when zoomed out.
  function placeTowns() {
    const z = map.getZoom();
    const min = z >= 9 ? 100000 : z >= 8 ? 200000 : z >= 7 ? 400000 : z >= 6 ? 1000000 : 3000000;
    for (const m of state.towns) {
      const on = m.population >= min;
      if (on && !map.hasLayer(m)) m.addTo(map);
      if (!on && map.hasLayer(m)) m.remove();
    }
  }

  async function loadRadars() {
    try {
      const v = await getJSON('/v1/radars');
      state.radars = v.radars;
    } catch (e) {
      statusEl.textContent = e.message;
      return;
    }
    const sel = $('radar');
    sel.innerHTML = '<option value="*">All radars (' + state.radars.length + ')</option>' +
      state.radars.map((r) => '<option value="' + esc(r.id) + '">' + esc(r.name) + ' (' + esc(r.status) + ')</option>').join('');
    if (!state.radars.length) { statusEl.textContent = 'no radars configured'; return; }
    sel.value = '*';
    drawRadars();
    select('*');
    loadBasemap();
    loadFrames();
  }

  async function loadLegend() {
    try {
      const s = await getJSON('/v1/colour-scale');
      state.scale = s.bands;
      $('legend').innerHTML = '<div><b>' + esc(s.units) + '</b></div>' +
        s.bands.slice().reverse().map((b) => '<div class="row"><span class="sw" style="background:' + b.color + '"></span>' +
          (b.max_mm_h == null ? '≥ ' + b.label : b.label + ' – ' + b.max_mm_h) + '</div>').join('') +
        '<div class="row"><span class="sw nodata"></span>no data</div>';
    } catch (e) { /* the legend is optional */ }
  }

  function colourOf(v) {
    let c = 'transparent';
    for (const b of state.scale) if (v >= b.min_mm_h) c = b.color;
    return c;
  }

  function renderForecast(f) {
    const entries = f.entries;
    const max = Math.max(2, ...entries.map((e) => e.intensity_mm_h || 0));
    const w = 100 / Math.max(1, entries.length);
    const bars = entries.map((e, i) => {
      const v = e.intensity_mm_h || 0;
      const h = v > 0 ? Math.max(2, 80 * Math.log1p(v) / Math.log1p(max)) : 0;
      return '<rect x="' + (i * w + w * 0.1).toFixed(2) + '" y="' + (85 - h).toFixed(1) + '" width="' + (w * 0.8).toFixed(2) +
        '" height="' + h.toFixed(1) + '" fill="' + colourOf(v) + '"><title>+' + e.lead_min + ' min: ' + v + ' mm/h</title></rect>';
    }).join('');
    const rows = entries.map((e) => '<tr><td>' + hhmm(e.time).slice(0, 5) + '</td><td>+' + e.lead_min + '</td><td>' +
      (e.intensity_mm_h == null ? '–' : e.intensity_mm_h.toFixed(1)) + '</td><td>' +
      (e.probability == null ? '–' : Math.round(e.probability * 100) + '%') + '</td></tr>').join('');
    panel.innerHTML =
      '<h2 id="forecast-summary">' + esc(f.summary) + '</h2>' +
      '<div class="meta">' + f.location.lat.toFixed(3) + ', ' + f.location.lon.toFixed(3) + ' · ' + esc(f.radar.name) +
      ' · issued ' + hhmm(f.issued_at) + '</div>' +
      '<svg viewBox="0 0 100 90" preserveAspectRatio="none" role="img" aria-label="Intensity per lead">' +
      '<line x1="0" y1="85" x2="100" y2="85" stroke="#9aa0aa" stroke-width="0.5"/>' + bars + '</svg>' +
      '<table><thead><tr><th>time</th><th>lead</th><th>mm/h</th><th>prob.</th></tr></thead><tbody>' + rows + '</tbody></table>';
    panel.dataset.state = 'ready';
  }

  async function forecastAt(ll) {
    if (state.clicked) state.clicked.remove();
    state.clicked = L.circleMarker(ll, { radius: 6, color: '#a3261c', weight: 2, fillColor: '#fff', fillOpacity: 0.9 }).addTo(map);
    panel.dataset.state = 'loading';
    panel.innerHTML = '<p class="hint">Loading the forecast…</p>';
    try {
      const lat = ll.lat.toFixed(5), lon = L.Util.wrapNum(ll.lng, [-180, 180], true).toFixed(5);
      renderForecast(await getJSON('/v1/forecast?lat=' + lat + '&lon=' + lon));
    } catch (e) {
      panel.innerHTML = '<p class="error" id="forecast-error">' + esc(e.message) + '</p>';
      panel.dataset.state = 'error';
    }
  }

  slider.addEventListener('input', () => { setPlaying(false); show(Number(slider.value)); });
  playBtn.addEventListener('click', () => setPlaying(!state.playing));
  $('radar').addEventListener('change', (e) => select(e.target.value));
  map.on('zoomend', placeTowns);
  map.on('click', (e) => forecastAt(e.latlng));

  loadLegend();
  loadRadars();
  setInterval(loadFrames, 30000);
  setInterval(loadSkill, 20000);
})();
