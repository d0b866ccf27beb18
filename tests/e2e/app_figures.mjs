// The technician's app's figures (issue 20; a bench, not a test: nothing here is asserted).
// Starts the given `fieldsync` (a release build) on a fresh data directory, and measures in
// Debian's chromium as a phone (390×844, touch):
//
//   1. app start to job list with --jobs jobs stored on the device, Chromium's CPU throttled
//      --throttle× (CDP `Emulation.setCPUThrottlingRate`, a mid-range phone): from the
//      navigation's start (performance.timeOrigin) to every job's row drawn from the device,
//      offline (service worker + IndexedDB) and online (the same, dialling the edge meanwhile);
//      medians of --runs reloads each;
//   2. sync after a day offline: --jobs jobs stored in the app, the app offline, the desk
//      changes every one of them (R3: the appointment, through the API), then online: time
//      from going online until every row shows the desk's change (stage "assigned") and
//      reads synced; --sync-runs runs, each with a fresh device, technician and jobs; run
//      unthrottled and throttled;
//   3. the size of the app's download (what the service worker caches), raw and gzip -9.
//
//   node tests/e2e/app_figures.mjs --fieldsync target/release/fieldsync [--jobs 200] \
//     [--runs 5] [--sync-runs 3] [--throttle 4] [--screenshots DIR]
//
// Prints one JSON line with every sample and the medians.

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import { openBrowser } from "./browser.mjs";

const { values: opts } = parseArgs({
  options: {
    fieldsync: { type: "string" },
    jobs: { type: "string", default: "200" },
    runs: { type: "string", default: "5" },
    "sync-runs": { type: "string", default: "3" },
    throttle: { type: "string", default: "4" },
    screenshots: { type: "string" },
    chromium: { type: "string", default: process.env.FIELDSYNC_CHROMIUM || "/usr/bin/chromium" },
  },
});
if (!opts.fieldsync) {
  console.error("app_figures.mjs: --fieldsync BIN is required (a release build)");
  process.exit(2);
}
const JOBS = Number(opts.jobs);
const RUNS = Number(opts.runs);
const SYNC_RUNS = Number(opts["sync-runs"]);
const THROTTLE = Number(opts.throttle);
const data = mkdtempSync(join(tmpdir(), "fieldsync-app-figures-"));
const env = { ...process.env, FIELDSYNC_LOG: "info", NO_COLOR: "1", FIELDSYNC_BRANCH_ID: "north-01" };
delete env.FIELDSYNC_CONFIG;
const cli = (args, input) =>
  execFileSync(opts.fieldsync, [...args, "--data-dir", data], { env: { ...env, FIELDSYNC_LOG: "warn" }, input }).toString().trim();
const median = xs => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

cli(["keygen"]);
cli(["user", "add", "--name", "wang", "--role", "manager"], "wang-figures-password\n");
const desk = cli(["desk", "token", "--user", "wang", "--ttl", "2h"]);
const server = spawn(opts.fieldsync, ["serve", "--listen", "127.0.0.1:0", "--data-dir", data], { env, stdio: ["ignore", "ignore", "pipe"] });
const base = await new Promise((resolve, reject) => {
  let seen = "";
  server.stderr.on("data", chunk => {
    seen += chunk;
    const addr = /serving.*addr=(\S+)/.exec(seen)?.[1];
    if (addr) resolve(`http://${addr}`);
  });
  server.on("exit", code => reject(new Error(`fieldsync serve exited ${code}: ${seen}`)));
});
const api = async (method, path, body) => {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${desk}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return r.json();
};
const jobBody = (technician, i) => ({
  kind: "repair",
  request: { channel: "phone", received_at: "2026-11-02T08:30:00Z", fault_description: `Compressor trips after ten minutes (${i})`, requested_arrival: "2026-11-03T09:00:00Z" },
  customer: { id: `c-${i}`, name: `客户 ${i} 号`, contact: "Ms Chen", site_address: `${i} Harbour Road` },
  product: { model: "CH-500", serial: `SN-${10000 + i}`, product_type: "chiller", warranty_end: "2025-04-01" },
  technician,
  pre_assign: true,
});

/** A technician with `JOBS` jobs and a phone enrolled for them, every job stored and synced. */
async function phoneWithJobs(technician) {
  const jobs = []
  for (let i = 0; i < JOBS; i += 1) jobs.push((await api("POST", "/api/jobs", jobBody(technician, i))).job_id);
  const { code } = await api("POST", "/api/enrollment-codes", { technician });
  const browser = await openBrowser({ base, screenshots: opts.screenshots ?? join(data, "shots"), chromium: opts.chromium }, {
    javaScriptEnabled: true,
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    locale: "zh-CN",
    serviceWorkers: "allow",
  });
  const { page } = browser;
  await page.goto(`${base}/app/`);
  await page.waitForSelector("#enroll");
  await page.fill("#code", code);
  await page.tap("#enroll button[type=submit]");
  await page.waitForFunction(n => document.querySelectorAll('li.job[data-stored="true"][data-sync="synced"]').length === n, JOBS, { timeout: 600_000 });
  return { browser, jobs };
}

/** Reloads and measures from the navigation's start to every job's row drawn. */
async function startToList(page) {
  await page.reload({ waitUntil: "commit" });
  return page.waitForFunction(n => {
    if (document.querySelectorAll("li.job[data-job]").length !== n) return false;
    return performance.now();
  }, JOBS, { polling: 10, timeout: 600_000 }).then(h => h.jsonValue());
}

const figures = { jobs: JOBS, throttle: THROTTLE, start_offline_ms: [], start_online_ms: [], sync_ms: [], sync_throttled_ms: [] };
try {
  // 3. The download.
  let raw = 0;
  let gz = 0;
  const assets = new URL("../../server/assets/app/", import.meta.url);
  for (const name of readdirSync(assets)) {
    const bytes = readFileSync(new URL(name, assets));
    raw += bytes.length;
    gz += gzipSync(bytes, { level: 9 }).length;
  }
  figures.download = { raw_bytes: raw, gzip_bytes: gz };

  // 1. Start to job list.
  const first = await phoneWithJobs("tech-start");
  {
    const { page, context } = first.browser;
    const cdp = await context.newCDPSession(page);
    await cdp.send("Emulation.setCPUThrottlingRate", { rate: THROTTLE });
    await context.setOffline(true);
    await startToList(page); // warm: the service worker's cache and the code cache
    for (let r = 0; r < RUNS; r += 1) figures.start_offline_ms.push(await startToList(page));
    await context.setOffline(false);
    await startToList(page);
    for (let r = 0; r < RUNS; r += 1) figures.start_online_ms.push(await startToList(page));
    await cdp.send("Emulation.setCPUThrottlingRate", { rate: 1 });
  }
  await first.browser.close();

  // 2. Sync after a day offline.
  for (let r = 0; r < 2 * SYNC_RUNS; r += 1) {
    const throttled = r >= SYNC_RUNS;
    const { browser, jobs } = await phoneWithJobs(`tech-sync-${r}`);
    const { page, context } = browser;
    const cdp = await context.newCDPSession(page);
    if (throttled) await cdp.send("Emulation.setCPUThrottlingRate", { rate: THROTTLE });
    await context.setOffline(true);
    await page.waitForSelector(`#net[data-state="offline"]`);
    for (const job of jobs) {
      await api("PUT", `/api/jobs/${job}/appointment`, { at: "2026-11-03T10:00:00Z", contacted_by: "desk-li", fault_rechecked: "压缩机跳闸" });
    }
    const t0 = Date.now();
    await context.setOffline(false);
    await page.waitForFunction(n => document.querySelectorAll('li.job[data-stage="assigned"][data-sync="synced"]').length === n, JOBS, { polling: 20, timeout: 600_000 });
    (throttled ? figures.sync_throttled_ms : figures.sync_ms).push(Date.now() - t0);
    await browser.close();
  }
  figures.median = {
    start_offline_ms: median(figures.start_offline_ms),
    start_online_ms: median(figures.start_online_ms),
    sync_ms: median(figures.sync_ms),
    sync_throttled_ms: median(figures.sync_throttled_ms),
  };
  console.log(JSON.stringify(figures));
} finally {
  server.kill("SIGTERM");
  rmSync(data, { recursive: true, force: true });
}
