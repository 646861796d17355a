// Raincast map page: radar coverage on a graticule (no base-map tiles, so it
// works offline), the rain overlay animating through the past hour and the
// nowcast with a time slider, and the point forecast on click. Talks only to
// this server's API.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const slider = $('time-slider');
  const label = $('frame-label');
  const panel = $('forecast');
  const statusEl = $('status');
  const playBtn = $('play');

  const map = L.map('map', { zoomSnap: 0.25 });
  map.attributionControl.setPrefix('Leaflet');
  map.attributionControl.addAttribution('Rain: Raincast');
  map.setView([47, 8], 6);

  const state = {
    radars: [], radar: null, frames: [], index: 0, playing: true, issued: null,
    overlay: null, coverage: null, site: null, graticule: null, clicked: null, scale: [],
    timer: null, preload: [],
  };

  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  const hhmm = (iso) => new Date(iso).toISOString().slice(11, 16) + ' UTC';

  async function getJSON(url) {
    const r = await fetch(url, { headers: { accept: 'application/json' } });
    const body = await r.json().catch(() => null);
    if (!r.ok) {
      const e = new Error(body && body.detail ? body.detail : r.status + ' ' + r.statusText);
      e.status = r.status;
      e.problem = body;
      throw e;
    }
    return body;
  }

  // Lines of latitude and longitude at a step that suits the view.
  function drawGraticule(b) {
    if (state.graticule) state.graticule.remove();
    const g = L.layerGroup();
    const span = Math.max(b.east - b.west, b.north - b.south);
    const step = [0.1, 0.25, 0.5, 1, 2, 5, 10, 20].find((s) => span / s <= 8) || 30;
    const w = Math.floor((b.west - span) / step) * step, e = Math.ceil((b.east + span) / step) * step;
    const s = Math.max(-85, Math.floor((b.south - span) / step) * step), n = Math.min(85, Math.ceil((b.north + span) / step) * step);
    const style = { color: '#9aa0aa', weight: 1, opacity: 0.6, interactive: false, dashArray: '3 4' };
    for (let lon = w; lon <= e + 1e-9; lon += step) {
      const pts = [];
      for (let lat = s; lat <= n + 1e-9; lat += step / 4) pts.push([lat, lon]);
      L.polyline(pts, style).addTo(g);
      L.marker([b.south, lon], { interactive: false, icon: L.divIcon({ className: 'graticule-label', html: (+lon.toFixed(2)) + '°', iconSize: [40, 12] }) }).addTo(g);
    }
    for (let lat = s; lat <= n + 1e-9; lat += step) {
      const pts = [];
      for (let lon = w; lon <= e + 1e-9; lon += step / 4) pts.push([lat, lon]);
      L.polyline(pts, style).addTo(g);
      L.marker([lat, b.west], { interactive: false, icon: L.divIcon({ className: 'graticule-label', html: (+lat.toFixed(2)) + '°', iconSize: [40, 12] }) }).addTo(g);
    }
    state.graticule = g.addTo(map);
  }

  function frameLabel(f) {
    if (f.kind === 'observed') return 'Observed ' + hhmm(f.time);
    return 'Forecast +' + f.lead + ' min · ' + hhmm(f.time);
  }

  function show(i) {
    if (!state.frames.length) return;
    state.index = Math.max(0, Math.min(state.frames.length - 1, i));
    const f = state.frames[state.index];
    state.overlay.setUrl(f.url);
    slider.value = String(state.index);
    label.textContent = frameLabel(f);
    label.className = f.kind;
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

  // A forecast frame that fails to load (410 Gone: the nowcast was replaced
  // between the page's requests) makes the page fetch the new frame list,
  // at most once every few seconds.
  function frameFailed(url) {
    if (!/\/nowcast\/frames\//.test(url || '')) return;
    const now = Date.now();
    if (state.refetching || now - (state.refetched || 0) < 3000) return;
    state.refetching = true;
    state.refetched = now;
    loadNowcast().finally(() => { state.refetching = false; });
  }

  async function loadNowcast() {
    const r = state.radar;
    if (!r) return;
    let n;
    try {
      n = await getJSON('/v1/radars/' + encodeURIComponent(r.id) + '/nowcast?past=60');
    } catch (e) {
      statusEl.textContent = e.message;
      return;
    }
    statusEl.textContent = 'issued ' + hhmm(n.issued_at) + ' · ' + n.frames.length + ' forecast frames';
    if (n.issued_at === state.issued) return;
    state.issued = n.issued_at;
    const shown = state.frames[state.index];
    const b = n.map_bounds;
    const bounds = [[b.south, b.west], [b.north, b.east]];
    state.frames = n.past.map((p) => ({ url: p.png, time: p.time, kind: 'observed' }))
      .concat(n.frames.map((f) => ({ url: f.png, time: f.time, kind: 'forecast', lead: f.lead_min })));
    // Warm the browser cache so the animation does not flicker.
    state.preload = state.frames.map((f) => {
      const im = new Image();
      im.onerror = () => frameFailed(f.url);
      im.src = f.url;
      return im;
    });
    let start = Math.max(0, n.past.length - 1);
    // Paused on a frame: stay on the same lead (or observed time).
    if (!state.playing && shown) {
      const same = state.frames.findIndex((f) => f.kind === shown.kind && (f.kind === 'forecast' ? f.lead === shown.lead : f.time === shown.time));
      if (same >= 0) start = same;
    }
    if (!state.overlay) {
      state.overlay = L.imageOverlay(state.frames[start].url, bounds, { opacity: 0.8, className: 'rain-overlay', interactive: false }).addTo(map);
      state.overlay.on('error', () => frameFailed(state.overlay.getElement() && state.overlay.getElement().src));
    } else {
      state.overlay.setBounds(L.latLngBounds(bounds));
    }
    slider.max = String(state.frames.length - 1);
    show(start);
    schedule();
    loadSkill();
  }

  // The skill panel: the radar's live skill over the last 24 h (CSI at
  // 1 mm/h per lead, Raincast against persistence, and the cases).
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
      box.innerHTML = '<b>Live skill</b> <span class="hint">scoring starts when the first nowcasts come true</span>';
      box.dataset.state = 'empty';
      return;
    }
    const rows = leads.map((l) => '<tr><td>+' + l.lead_min + '</td><td>' + csi1(l.raincast) + '</td><td>' + csi1(l.persistence) +
      '</td><td>' + l.raincast.cases + '</td></tr>').join('');
    box.innerHTML = '<b>Live skill, last 24 h</b> <span class="hint">CSI at 1 mm/h</span>' +
      '<table><thead><tr><th>lead</th><th>Raincast</th><th>persist.</th><th>cases</th></tr></thead><tbody>' + rows + '</tbody></table>';
    box.dataset.state = 'ready';
  }

  function selectRadar(id) {
    const r = state.radars.find((x) => x.id === id);
    if (!r) return;
    state.radar = r;
    state.issued = null;
    if (state.coverage) state.coverage.remove();
    if (state.site) state.site.remove();
    if (r.coverage) {
      state.coverage = L.geoJSON(r.coverage, { style: { color: '#4a5160', weight: 1.5, fill: false, dashArray: '6 4' }, interactive: false }).addTo(map);
    }
    if (r.location) {
      state.site = L.circleMarker([r.location.lat, r.location.lon], { radius: 4, color: '#1d2230', weight: 2, fillColor: '#fff', fillOpacity: 1 })
        .bindTooltip(esc(r.name)).addTo(map);
    }
    if (r.bounds) {
      map.fitBounds([[r.bounds.south, r.bounds.west], [r.bounds.north, r.bounds.east]], { padding: [20, 20] });
      drawGraticule(r.bounds);
    }
    loadNowcast();
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
    sel.innerHTML = state.radars.map((r) => '<option value="' + esc(r.id) + '">' + esc(r.name) + ' (' + esc(r.status) + ')</option>').join('');
    const first = state.radars.find((r) => r.status !== 'no_data') || state.radars[0];
    if (!first) { statusEl.textContent = 'no radars configured'; return; }
    sel.value = first.id;
    selectRadar(first.id);
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
  $('radar').addEventListener('change', (e) => selectRadar(e.target.value));
  map.on('click', (e) => forecastAt(e.latlng));

  loadLegend();
  loadRadars();
  setInterval(loadNowcast, 60000);
  setInterval(loadSkill, 20000);
})();
