// The technician's app's figures (issue 20): not a test, a measurement, driven by
// `app-figures` (tests/bin/app_figures.rs), which starts a real `fieldsync serve`, creates
// --jobs jobs for one technician through the desk's API and gives this script an
// enrollment code for that technician:
//
//   node tests/e2e/app_figures.mjs --base http://127.0.0.1:PORT --code XXXX-XXXX-XXXX \
//     --jobs 200 --runs 5 --throttle 4 --arrive 10 --desk-token TOKEN --screenshots DIR
//
// In Debian's chromium as a phone (390×844, touch):
// 1. enrollment, then the first sync: every job listed, synced and kept in IndexedDB;
// 2. app start to the job list, --runs times in a fresh tab of the same profile (the app and
//    its 200 documents already on the device), the tab's CPU throttled --throttle× through
//    CDP (`Emulation.setCPUThrottlingRate`, a mid-range phone): from the navigation's start
//    to the moment every job row shows its state, measured in the page (a MutationObserver
//    installed before the app's own script, `performance.now()`), offline (the service worker
//    and IndexedDB only) and online;
// 3. a day offline: the device goes offline, the technician records arrival (R2) on --arrive
//    jobs, the desk agrees an appointment (R3) on every job meanwhile; then online, the time
//    until every job shows the desk's change and the technician's, and the server holds every
//    change of the device (each row `synced`), measured the same way.
// Prints one JSON line with every run and the medians.

import { writeFileSync } from "node:fs";

import { PHONE, commandLine, openBrowser, expect } from "./browser.mjs";

const args = commandLine("app_figures.mjs", {
  code: { type: "string" },
  jobs: { type: "string", default: "200" },
  runs: { type: "string", default: "5" },
  throttle: { type: "string", default: "4" },
  arrive: { type: "string", default: "10" },
  "desk-token": { type: "string" },
  // Profiling aids: serve this file as /app/app.js (an unminified build: see
  // docs/BENCHMARKS.md) with the service worker blocked, and write a CPU profile
  // (chrome's .cpuprofile) of the second start (the first compiles what the others reuse).
  "dev-bundle": { type: "string" },
  profile: { type: "string" },
}, ["code", "desk-token"]);
const JOBS = Number(args.jobs);
const RUNS = Number(args.runs);
const THROTTLE = Number(args.throttle);
const ARRIVE = Number(args.arrive);

const median = xs => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? null : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// Before the app's script: notes the first moment the list holds `want` rows that each show a
// job's state (`li.job` without `.loading`) matching `ready` (a selector suffix), and records
// it as `window.__listedAt` (ms since the navigation started).
function watchList({ want, ready }) {
  const check = () => {
    if (window.__listedAt !== undefined) return;
    if (document.querySelectorAll(`#jobs li.job:not(.loading)${ready}`).length >= want) {
      window.__listedAt = performance.now();
    }
  };
  new MutationObserver(check).observe(document, { subtree: true, childList: true, attributes: true });
}

const browser = await openBrowser(args, { ...PHONE, serviceWorkers: args["dev-bundle"] ? "block" : "allow" });
if (args["dev-bundle"]) {
  await browser.context.route("**/app/app.js", route => route.fulfill({ path: args["dev-bundle"], contentType: "text/javascript" }));
}

let step = "enroll";
const out = { ok: false, jobs: JOBS, throttle: THROTTLE };
try {
  const { context, base } = browser;
  let page = browser.page;
  await page.goto(`${base}/app`);
  await page.waitForSelector("#enroll #code");
  await page.fill("#code", args.code);
  const enrolled = Date.now();
  await page.tap("#enroll button[type=submit]");
  await page.waitForSelector("#who");

  step = "the first sync";
  await page.waitForFunction(
    n => document.querySelectorAll('#jobs li.job[data-sync="synced"][data-stored="true"]').length === n,
    JOBS,
    { timeout: 600_000, polling: 200 },
  );
  out.first_sync_ms = Date.now() - enrolled;
  // The service worker holds the shell before the first offline start.
  if (!args["dev-bundle"]) await page.evaluate(() => navigator.serviceWorker.ready);

  let starts = 0;
  /** One app start in a fresh tab, throttled: ms from navigation start to the full list. */
  async function start(ready) {
    await page.close();
    page = await context.newPage();
    await page.addInitScript(watchList, { want: JOBS, ready });
    const cdp = await context.newCDPSession(page);
    await cdp.send("Emulation.setCPUThrottlingRate", { rate: THROTTLE });
    starts += 1;
    const profiling = Boolean(args.profile) && starts === 2;
    if (profiling) {
      await cdp.send("Profiler.enable");
      await cdp.send("Profiler.start");
    }
    await page.goto(`${base}/app/`);
    await page.waitForFunction(() => window.__listedAt !== undefined, null, { timeout: 300_000, polling: 100 });
    if (profiling) {
      const { profile } = await cdp.send("Profiler.stop");
      writeFileSync(args.profile, JSON.stringify(profile));
    }
    const at = await page.evaluate(() => window.__listedAt);
    await cdp.send("Emulation.setCPUThrottlingRate", { rate: 1 });
    await cdp.detach();
    return Math.round(at);
  }

  step = "app start to the job list, offline";
  // Offline starts need the service worker (blocked with --dev-bundle).
  if (!args["dev-bundle"]) await context.setOffline(true);
  out.start_offline_ms = [];
  for (let i = 0; i < RUNS; i++) out.start_offline_ms.push(await start(""));
  step = "app start to the job list, online";
  await context.setOffline(false);
  out.start_online_ms = [];
  for (let i = 0; i < RUNS; i++) out.start_online_ms.push(await start(""));
  await page.screenshot({ path: browser.shot("jobs-200.png") });

  step = "a day offline: the technician records arrivals, the desk agrees appointments";
  // A fresh, unthrottled tab that has synced, then offline.
  await page.close();
  page = await context.newPage();
  await page.goto(`${base}/app/`);
  await page.waitForFunction(
    n => document.querySelectorAll('#jobs li.job[data-sync="synced"]').length === n,
    JOBS,
    { timeout: 300_000, polling: 200 },
  );
  await context.setOffline(true);
  await page.waitForSelector('#net[data-state="offline"]');
  const ids = await page.$$eval("#jobs li.job", rows => rows.map(r => r.dataset.job));
  expect(ids.length === JOBS, `${ids.length} rows`);
  for (const id of ids.slice(0, ARRIVE)) {
    await page.tap(`li.job[data-job="${id}"]`);
    await page.tap("#arrive");
    await page.waitForSelector("#arrived");
    await page.tap("#back");
    await page.waitForSelector(`li.job[data-job="${id}"][data-stage="on_site"][data-sync="unsynced"]`);
  }
  const desk = Date.now();
  for (let i = 0; i < ids.length; i += 8) {
    await Promise.all(ids.slice(i, i + 8).map(async id => {
      const answer = await fetch(`${base}/api/jobs/${id}/appointment`, {
        method: "PUT",
        headers: { authorization: `Bearer ${args["desk-token"]}`, "content-type": "application/json" },
        body: JSON.stringify({ at: "2026-11-03T10:00:00Z", contacted_by: "desk-li", fault_rechecked: "电话确认故障" }),
      });
      expect(answer.ok, `appointment for ${id}: ${answer.status} ${await answer.text()}`);
    }));
  }
  out.desk_edits_ms = Date.now() - desk;

  step = "back online: every job has both sides' changes, and the server has the device's";
  const online = Date.now();
  await page.evaluate(() => {
    window.__onlineAt = performance.now();
    window.__listedAt = undefined;
  });
  await page.evaluate(watchList, { want: JOBS, ready: '[data-sync="synced"]:is([data-stage="assigned"], [data-stage="on_site"])' });
  await context.setOffline(false);
  await page.waitForFunction(() => window.__listedAt !== undefined, null, { timeout: 600_000, polling: 200 });
  out.day_offline_sync_ms = Math.round(await page.evaluate(() => window.__listedAt - window.__onlineAt));
  out.day_offline_sync_wall_ms = Date.now() - online;
  const onSite = await page.$$eval('#jobs li.job[data-stage="on_site"]', rows => rows.length);
  expect(onSite === ARRIVE, `${onSite} jobs on site, expected ${ARRIVE}`);
  out.arrived_offline = ARRIVE;

  step = "the app's download";
  const sizes = {};
  for (const file of ["index.html", "app.js", "app.css", "automerge.wasm", "sw.js", "manifest.webmanifest"]) {
    const plain = await fetch(`${base}/app/${file}`);
    const bytes = (await plain.arrayBuffer()).byteLength;
    sizes[file] = bytes;
  }
  out.download_bytes = sizes;
  out.download_total_bytes = Object.values(sizes).reduce((a, b) => a + b, 0);

  out.median = {
    start_offline_ms: median(out.start_offline_ms),
    start_online_ms: median(out.start_online_ms),
  };
  out.ok = true;
  console.log(JSON.stringify(out));
} catch (e) {
  console.error(`app_figures.mjs: ${step}: ${e?.stack ?? e}`);
  console.log(JSON.stringify({ ...out, ok: false, step, error: String(e?.message ?? e) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
