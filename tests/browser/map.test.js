// Browser test of the map page: headless Chromium (Debian's package) loads
// the page from a running `raincast run` with the demo radars, checks that
// the mosaic's rain tiles (/v2/radar/...) have loaded with rain in them, that
// the embedded basemap is drawn (lines on its canvas, town labels) and the
// time slider works, clicks the map inside a radar's coverage and checks
// that the point forecast appears, then waits for the live-skill panel to
// fill. Saves a screenshot. Then a second page, a RainViewer-style Leaflet
// client (Leaflet from npm, served by Playwright from a made-up origin, no
// network), uses RainViewer's documented URL scheme unchanged against this
// server and must draw our rain.
//
//   node tests/browser/map.test.js BASE_URL SCREENSHOT.png
//
// Normally started by tests/browser/run.sh, which installs the dependencies
// (NODE_PATH points at them), starts the server and waits for a nowcast.
// Every wait polls a condition with a generous limit: nothing here depends on
// how fast the machine is.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const zlib = require('zlib');
const { chromium } = require('playwright-core');

const [base, shot] = process.argv.slice(2);
if (!base || !shot) {
  console.error('usage: node map.test.js BASE_URL SCREENSHOT.png');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
// Limit of each wait. Generous: a debug build on a busy 2-core machine
// renders frames slowly.
const WAIT_MS = Number(process.env.RAINCAST_BROWSER_WAIT_MS || 300000);

// Keep Chromium off the network: no background services, updates, sync,
// QUIC probes or first-run pages. The page itself only talks to `base`.
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-domain-reliability',
  '--no-pings',
  '--metrics-recording-only',
];

function log(...a) {
  console.log('[browser]', ...a);
}

async function main() {
  // A fresh profile (Playwright passes it as --user-data-dir).
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'raincast-chromium-'));
  let context;
  const problems = [];
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: ARGS,
      viewport: { width: 1200, height: 720 },
      timeout: WAIT_MS,
    });
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(WAIT_MS);
    const origin = new URL(base).origin;
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    // A tile of a frame replaced between the page's requests (a newer
    // nowcast, or a scan aged out) answers 404; the page then fetches the
    // new frame list (counted below, not a problem). The demo radars scan
    // every 10 s.
    const replacedFrame = (url) => /\/v2\/radar\//.test(url || '');
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      const url = m.location().url || '';
      if (/status of 404/.test(m.text()) && replacedFrame(url)) return;
      problems.push('console error: ' + m.text() + ' (' + (url || '?') + ')');
    });
    page.on('requestfailed', (r) => {
      // An overlay frame replaced by the next one before it loaded is aborted
      // by the browser on purpose; anything else is a failure.
      const f = r.failure();
      if (!(f && /ERR_ABORTED/.test(f.errorText))) problems.push('request failed: ' + r.url() + ' ' + (f && f.errorText));
    });
    page.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(origin) && !u.startsWith('data:') && !u.startsWith('blob:')) {
        problems.push('request outside the server (the page must work offline): ' + u);
      }
    });
    let replaced = 0;
    let firstGone = 0;
    let refetchedAfterGone = false;
    page.on('response', (r) => {
      // Every request of the page must succeed, but for a tile of a frame
      // replaced between the page's requests (404): the page then fetches
      // the new frame list, which the checks below rely on.
      if (r.status() === 404 && replacedFrame(r.url())) {
        replaced += 1;
        if (!firstGone) firstGone = Date.now();
        return;
      }
      if (/\/public\/weather-maps\.json/.test(r.url()) && firstGone && r.status() === 200) refetchedAfterGone = true;
      if (r.status() >= 400) problems.push('HTTP ' + r.status() + ' for ' + r.url());
    });

    log('loading', base);
    await page.goto(base, { waitUntil: 'load' });

    // 1. The map, the rain tiles of the shown frame, with rain in them.
    await page.waitForSelector('#map.leaflet-container');
    // The shown frame's layer is the one at a non-zero opacity; its loaded
    // tiles are same-origin, so their pixels can be read.
    const shownTiles = () => page.evaluate(() => {
      const layer = Array.from(document.querySelectorAll('.rain-tiles')).find((l) => Number(l.style.opacity) > 0);
      if (!layer) return null;
      const imgs = Array.from(layer.querySelectorAll('img.leaflet-tile-loaded')).filter((im) => im.complete && im.naturalWidth > 0);
      let rain = 0;
      const c = document.createElement('canvas');
      c.width = 256; c.height = 256;
      const g = c.getContext('2d', { willReadFrequently: true });
      for (const im of imgs) {
        g.clearRect(0, 0, 256, 256);
        g.drawImage(im, 0, 0, 256, 256);
        const d = g.getImageData(0, 0, 256, 256).data;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) rain += 1;
      }
      return { tiles: imgs.length, rain, src: imgs.length ? imgs[0].getAttribute('src') : null, label: document.getElementById('frame-label').textContent };
    });
    const rainy = await (async () => {
      const deadline = Date.now() + WAIT_MS;
      for (;;) {
        const t = await shownTiles();
        if (t && t.tiles > 0 && t.rain > 0) return t;
        if (Date.now() > deadline) throw new Error('no rain tile with rain pixels: ' + JSON.stringify(t));
        await page.waitForTimeout(250);
      }
    })();
    log('rain tiles of the shown frame:', rainy.tiles, 'tiles,', rainy.rain, 'rain pixels, e.g.', rainy.src);
    if (!/^\/v2\/radar\/[^/]+\/256\/\d+\/\d+\/\d+\/1\/1_0\.png$/.test(rainy.src)) throw new Error('unexpected tile URL ' + rainy.src);

    // 2. The embedded basemap: lines drawn on its canvas, town labels.
    const basemap = await (await page.waitForFunction(() => {
      const cv = document.querySelector('.leaflet-basemap-pane canvas');
      const towns = document.querySelectorAll('.town-label').length;
      if (!cv || !cv.width || !towns) return false;
      const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
      let ink = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink += 1;
      return ink > 500 && { ink, towns, names: Array.from(document.querySelectorAll('.town-label')).slice(0, 5).map((e) => e.textContent) };
    }, null, { polling: 500 })).jsonValue();
    log('basemap:', basemap.ink, 'line pixels,', basemap.towns, 'towns, e.g.', basemap.names.join(', '));

    const slider = '#time-slider';
    await page.waitForSelector(slider, { state: 'visible' });
    await page.waitForFunction((sel) => Number(document.querySelector(sel).max) > 0, slider, { polling: 250 });
    const frames = await page.$eval(slider, (s) => Number(s.max) + 1);
    log('time slider:', frames, 'frames');

    // 3. Moving the slider to the last frame (the longest forecast lead)
    //    stops the animation and shows that forecast frame's tiles.
    await page.$eval(slider, (s) => {
      s.value = s.max;
      s.dispatchEvent(new Event('input', { bubbles: true }));
    });
    await page.waitForFunction(() => /^Forecast \+\d+ min/.test(document.getElementById('frame-label').textContent), null, { polling: 250 });
    {
      const deadline = Date.now() + WAIT_MS;
      for (;;) {
        const t = await shownTiles();
        if (t && t.tiles > 0 && /^\/v2\/radar\/nowcast_/.test(t.src || '')) { log('slider at the last frame:', t.label, '(' + t.src + ')'); break; }
        if (Date.now() > deadline) throw new Error('forecast tiles not shown: ' + JSON.stringify(t));
        await page.waitForTimeout(250);
      }
    }
    // Back to the newest observed scan for the picture.
    await page.$eval(slider, (s) => {
      const label = document.getElementById('frame-label');
      for (let i = Number(s.max); i >= 0; i--) {
        s.value = String(i);
        s.dispatchEvent(new Event('input', { bubbles: true }));
        if (label.textContent.startsWith('Observed')) return;
      }
    });
    {
      const deadline = Date.now() + WAIT_MS;
      for (;;) {
        const t = await shownTiles();
        if (t && t.tiles > 0 && t.rain > 0 && t.label.startsWith('Observed') && !/nowcast_/.test(t.src)) { log('slider at', t.label, '(' + t.src + ')'); break; }
        if (Date.now() > deadline) throw new Error('observed tiles not shown: ' + JSON.stringify(t));
        await page.waitForTimeout(250);
      }
    }

    // 4. A click on the map inside the coverage of the first radar (its
    //    dashed outline), a little east and north of its centre.
    const box = await page.$eval('.leaflet-labels-pane path', (p) => p.getBoundingClientRect().toJSON());
    const x = box.x + box.width * 0.62, y = box.y + box.height * 0.42;
    log('clicking the map at', Math.round(x), Math.round(y));
    await page.mouse.click(x, y);
    await page.waitForFunction(() => {
      const s = document.getElementById('forecast').dataset.state;
      return s === 'ready' || s === 'error';
    }, null, { polling: 250 });
    const state = await page.getAttribute('#forecast', 'data-state');
    if (state !== 'ready') {
      throw new Error('point forecast failed: ' + (await page.textContent('#forecast')));
    }
    const summary = (await page.textContent('#forecast-summary')).trim();
    const rows = await page.$$eval('#forecast tbody tr', (r) => r.length);
    const meta = (await page.textContent('#forecast .meta')).trim();
    log('forecast:', JSON.stringify(summary), '|', meta, '|', rows, 'steps');
    if (!summary) throw new Error('the forecast has no summary');
    if (rows < 2) throw new Error('the forecast shows ' + rows + ' steps');

    // 5. The skill panel fills once the demo's first nowcasts come true
    //    (the 5-min lead, some minutes after the start).
    const skillWait = Number(process.env.RAINCAST_BROWSER_SKILL_WAIT_MS || 900000);
    await page.waitForFunction(() => document.getElementById('skill').dataset.state === 'ready', null, { polling: 1000, timeout: skillWait });
    const skillRows = await page.$$eval('#skill tbody tr', (r) => r.map((tr) => Array.from(tr.cells).map((c) => c.textContent)));
    log('skill panel:', JSON.stringify(skillRows));
    if (!skillRows.length || !skillRows.every((r) => r.length === 4 && /^\+\d+$/.test(r[0]) && Number(r[3]) > 0)) {
      throw new Error('the skill panel shows ' + JSON.stringify(skillRows));
    }
    if (replaced) {
      // The page must have fetched the new frame list after the first 410.
      const deadline = Date.now() + WAIT_MS;
      while (!refetchedAfterGone && Date.now() < deadline) await page.waitForTimeout(500);
      if (!refetchedAfterGone) throw new Error(replaced + ' frame request(s) answered 410 and the page did not fetch the new frame list');
      log(replaced, 'frame request(s) of a replaced nowcast answered 410; the page fetched the new frame list');
    }

    await page.screenshot({ path: shot });
    log('screenshot:', shot);
    if (problems.length) throw new Error('the page reported problems:\n  ' + problems.join('\n  '));
    await rainviewerClient(context, base);
    log('ok');
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

// A minimal PNG decoder (8-bit RGB or RGBA, not interlaced: what Chromium's
// screenshots are) → { width, height, rgba }.
function decodePng(buf) {
  let pos = 8, width = 0, height = 0, type = 0;
  const idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos), kind = buf.toString('ascii', pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    if (kind === 'IHDR') {
      width = data.readUInt32BE(0); height = data.readUInt32BE(4);
      if (data[8] !== 8 || (data[9] !== 2 && data[9] !== 6) || data[12] !== 0) throw new Error('unsupported PNG');
      type = data[9];
    } else if (kind === 'IDAT') idat.push(data);
    pos += 12 + len;
  }
  const bpp = type === 6 ? 4 : 3, stride = width * bpp;
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const out = Buffer.alloc(width * height * 4);
  let prev = Buffer.alloc(stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    const line = Buffer.from(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)));
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? line[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
      let p;
      if (f === 0) p = 0;
      else if (f === 1) p = a;
      else if (f === 2) p = b;
      else if (f === 3) p = (a + b) >> 1;
      else {
        const q = a + b - c, pa = Math.abs(q - a), pb = Math.abs(q - b), pc = Math.abs(q - c);
        p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      line[i] = (line[i] + p) & 255;
    }
    for (let x = 0; x < width; x++) {
      out[4 * (y * width + x)] = line[x * bpp];
      out[4 * (y * width + x) + 1] = line[x * bpp + 1];
      out[4 * (y * width + x) + 2] = line[x * bpp + 2];
      out[4 * (y * width + x) + 3] = bpp === 4 ? line[x * bpp + 3] : 255;
    }
    prev = line;
  }
  return { width, height, rgba: out };
}

// A RainViewer client, as RainViewer documents it (fetch
// {host}/public/weather-maps.json, then one L.tileLayer per frame at
// host + path + '/256/{z}/{x}/{y}/2/1_1.png'), only pointed at this server.
// The page lives on another origin (made up, served by Playwright from the
// npm packages: no network), so it also checks that the frame list is open
// to other origins. Its map has a white background and no controls: every
// non-white pixel of its screenshot is rain from our tiles.
async function rainviewerClient(context, base) {
  const host = new URL(base).origin;
  // Another origin (another port on the loopback address, served by
  // Playwright, nothing listens there). The server listens on the loopback
  // address, which Chromium lets other origins reach only from a secure
  // context (loopback origins are) with the "local network access"
  // permission; a real deployment is not on the loopback address.
  const origin = 'http://127.0.0.1:9';
  await context.grantPermissions(['local-network-access'], { origin });
  const leaflet = path.join(require.resolve('leaflet/package.json'), '..', 'dist');
  const radars = await (await fetch(host + '/v1/radars')).json();
  const site = radars.radars.find((r) => r.location).location;
  const html = `<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/leaflet.css"><script src="/leaflet.js"></script>
<style>html,body,#map{margin:0;height:100%;background:#fff}.leaflet-container{background:#fff}</style></head>
<body><div id="map"></div><script>
const map = L.map('map', { zoomControl: false, attributionControl: false }).setView([${site.lat}, ${site.lon}], 7);
window.tiles = [];
fetch('${host}' + '/public/weather-maps.json').then((r) => r.json()).then((api) => {
  const frame = api.radar.past[api.radar.past.length - 1];
  const layer = L.tileLayer(api.host + frame.path + '/256/{z}/{x}/{y}/2/1_1.png', { tileSize: 256, opacity: 1, zIndex: 2 });
  layer.on('tileload', (e) => window.tiles.push(e.tile.src));
  layer.on('load', () => { window.loaded = true; });
  layer.addTo(map);
}).catch((e) => { window.failed = String(e); });
</script></body></html>`;
  const page = await context.newPage();
  const outside = [];
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(origin) && !u.startsWith(host)) outside.push(u);
  });
  await page.route(origin + '/**', (route) => {
    const u = new URL(route.request().url());
    if (u.pathname === '/index.html') return route.fulfill({ contentType: 'text/html', body: html });
    if (u.pathname === '/leaflet.js' || u.pathname === '/leaflet.css') {
      return route.fulfill({ path: path.join(leaflet, u.pathname.slice(1)) });
    }
    return route.fulfill({ status: 404, body: '' });
  });
  await page.goto(origin + '/index.html', { waitUntil: 'load' });
  await page.waitForFunction(() => window.loaded || window.failed, null, { polling: 250, timeout: WAIT_MS });
  const failed = await page.evaluate(() => window.failed);
  if (failed) throw new Error('RainViewer client: ' + failed);
  const tiles = await page.evaluate(() => window.tiles);
  if (!tiles.length || !tiles.every((t) => t.startsWith(host + '/v2/radar/') && t.endsWith('/2/1_1.png'))) {
    throw new Error('RainViewer client tiles: ' + JSON.stringify(tiles.slice(0, 4)));
  }
  const png = decodePng(await page.screenshot());
  let rain = 0;
  for (let i = 0; i < png.rgba.length; i += 4) {
    if (png.rgba[i] < 250 || png.rgba[i + 1] < 250 || png.rgba[i + 2] < 250) rain += 1;
  }
  log('RainViewer client:', tiles.length, 'tiles from', host + ', e.g.', tiles[0].slice(host.length) + ';', rain, 'rain pixels of', png.width * png.height);
  if (rain < 50) throw new Error('the RainViewer client drew ' + rain + ' rain pixels');
  if (outside.length) throw new Error('the RainViewer client requested other hosts: ' + outside.join(' '));
  await page.close();
}

main().catch((e) => {
  console.error('[browser] FAILED:', e && e.stack ? e.stack : e);
  process.exit(1);
});
