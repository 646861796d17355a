// Browser test of the map page: headless Chromium (Debian's package) loads
// the page from a running `raincast run` with the demo radar, checks that the
// rain overlay image has loaded and the time slider works, clicks the map
// inside the radar's coverage and checks that the point forecast appears,
// then waits for the live-skill panel to fill. Saves a screenshot.
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
    // A forecast frame of a nowcast replaced between the page's requests
    // answers 410 Gone; the page then fetches the new frame list (counted
    // below, not a problem). The demo radar scans every 10 s.
    const replacedFrame = (url) => /\/nowcast\/frames\//.test(url || '');
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      const url = m.location().url || '';
      if (/status of 410/.test(m.text()) && replacedFrame(url)) return;
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
      // Every request of the page must succeed, but for a forecast frame of
      // a nowcast replaced between the page's requests (410 Gone): the page
      // then fetches the new frame list, which the checks below rely on.
      if (r.status() === 410 && replacedFrame(r.url())) {
        replaced += 1;
        if (!firstGone) firstGone = Date.now();
        return;
      }
      if (/\/nowcast\?past=/.test(r.url()) && firstGone && r.status() === 200) refetchedAfterGone = true;
      if (r.status() >= 400) problems.push('HTTP ' + r.status() + ' for ' + r.url());
    });

    log('loading', base);
    await page.goto(base, { waitUntil: 'load' });

    // 1. The map, the rain overlay image and the time slider.
    await page.waitForSelector('#map.leaflet-container');
    const overlay = 'img.rain-overlay';
    await page.waitForSelector(overlay, { state: 'attached' });
    // (The animation keeps changing the image: read it when it is loaded.)
    const img = await (await page.waitForFunction((sel) => {
      const im = document.querySelector(sel);
      return im && im.complete && im.naturalWidth > 0 && im.naturalHeight > 0 && {
        src: im.getAttribute('src'), w: im.naturalWidth, h: im.naturalHeight,
        box: im.getBoundingClientRect().toJSON(),
      };
    }, overlay, { polling: 250 })).jsonValue();
    log('overlay loaded:', img.src, img.w + 'x' + img.h);
    if (!(img.box.width > 50 && img.box.height > 50)) throw new Error('overlay is not on screen: ' + JSON.stringify(img.box));

    const slider = '#time-slider';
    await page.waitForSelector(slider, { state: 'visible' });
    await page.waitForFunction((sel) => Number(document.querySelector(sel).max) > 0, slider, { polling: 250 });
    const frames = await page.$eval(slider, (s) => Number(s.max) + 1);
    log('time slider:', frames, 'frames');

    // 2. Moving the slider to the last frame (the longest forecast lead)
    //    stops the animation and shows that forecast frame.
    await page.$eval(slider, (s) => {
      s.value = s.max;
      s.dispatchEvent(new Event('input', { bubbles: true }));
    });
    await page.waitForFunction(() => /^Forecast \+\d+ min/.test(document.getElementById('frame-label').textContent), null, { polling: 250 });
    // The overlay shows that lead's forecast frame, loaded.
    await page.waitForFunction((sel) => {
      const im = document.querySelector(sel);
      const lead = /^Forecast \+(\d+) min/.exec(document.getElementById('frame-label').textContent);
      return im && lead && im.complete && im.naturalWidth > 0 &&
        new RegExp('/nowcast/frames/' + lead[1] + '\\?').test(im.src);
    }, overlay, { polling: 250 });
    log('slider at the last frame:', await page.textContent('#frame-label'));
    // Back to the newest observed scan for the picture.
    await page.$eval(slider, (s) => {
      const label = document.getElementById('frame-label');
      for (let i = Number(s.max); i >= 0; i--) {
        s.value = String(i);
        s.dispatchEvent(new Event('input', { bubbles: true }));
        if (label.textContent.startsWith('Observed')) return;
      }
    });
    await page.waitForFunction((sel) => {
      const im = document.querySelector(sel);
      return im && im.complete && im.naturalWidth > 0 && /\/scans\/[^?]+\?format=png/.test(im.src) &&
        document.getElementById('frame-label').textContent.startsWith('Observed');
    }, overlay, { polling: 250 });
    log('slider at', await page.textContent('#frame-label'), '(' + (await page.getAttribute(overlay, 'src')) + ')');

    // 3. A click on the map inside the coverage: the overlay covers the
    //    radar's grid, whose centre is the radar site; click a little
    //    east and north of the centre (off the site marker).
    const box = (await page.$eval(overlay, (im) => im.getBoundingClientRect().toJSON()));
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

    // 4. The skill panel fills once the demo's first nowcasts come true
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
    log('ok');
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error('[browser] FAILED:', e && e.stack ? e.stack : e);
  process.exit(1);
});
