// The technician's app in a real browser (issue 20): Debian's chromium, driven by
// playwright-core, as a phone (390×844, touch, JavaScript on). Run by tests/it/pwa_browser.rs
// against a real `fieldsync serve`:
//
//   node tests/e2e/app.mjs --base http://127.0.0.1:PORT --code XXXX-XXXX-XXXX \
//     --job <document id> --customer 华东机械厂 --fault-cause TEXT --check-out-note TEXT \
//     --screenshots DIR
//
// Steps: `/app` opens the enrollment form; an unknown code is refused with the server's
// reason; the desk's code enrolls the device (an Ed25519 key made by WebCrypto, not
// extractable); the job --job is listed with its state in words, synced and kept on the
// device; the service worker holds the app shell; offline (`context.setOffline(true)`) a
// reload opens the app from the service worker and lists the job from IndexedDB; the
// language switch shows English; still offline the technician records arrival (R2), the
// fault cause (R7) and the check-out (R11), which the job shows as not yet synced; back
// online they reach the server, which refuses none of them. Screenshots go to
// --screenshots. Prints one JSON line with the steps and timings; exits 1 with the failing
// step on stderr.

import { commandLine, openBrowser, expect } from "./browser.mjs";

const args = commandLine("app.mjs", {
  code: { type: "string" },
  job: { type: "string" },
  customer: { type: "string" },
  "fault-cause": { type: "string" },
  "check-out-note": { type: "string" },
}, ["code", "job", "customer", "fault-cause", "check-out-note"]);

const STAGES_ZH = {
  new: "新建", assigned: "已预约", on_site: "在现场", completed: "待签发",
  signed: "已签发", refused: "被退回", cancelled: "已取消",
};
const STAGES_EN = {
  new: "New", assigned: "Appointment agreed", on_site: "On site",
  completed: "Completed, awaiting report", signed: "Report signed", refused: "Report refused",
  cancelled: "Cancelled",
};

const started = Date.now();
const steps = [];
const timings = {};
let step = "launch";
const browser = await openBrowser(args, {
  javaScriptEnabled: true,
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
  locale: "zh-CN",
  serviceWorkers: "allow",
});

const consoleLines = [];
try {
  const { page, context, base } = browser;
  page.on("console", m => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", e => consoleLines.push(`pageerror: ${e.message}`));
  const job = `li.job[data-job="${args.job}"]`;

  step = "/app opens the enrollment form";
  await page.goto(`${base}/app`);
  expect(new URL(page.url()).pathname === "/app/", `/app led to ${page.url()}`);
  await page.waitForSelector("#enroll #code");
  const heading = (await page.textContent("#enroll h2")) ?? "";
  expect(heading.includes("登记此设备"), `enrollment heading ${JSON.stringify(heading)}`);
  await page.screenshot({ path: browser.shot("enroll.png") });
  steps.push(step);

  step = "an unknown code is refused";
  await page.tap("#code");
  await page.fill("#code", "0000-0000-0000");
  await page.tap("#enroll button[type=submit]");
  await page.waitForSelector("#enroll-error");
  const refusal = (await page.textContent("#enroll-error")) ?? "";
  expect(refusal.includes("unknown_enrollment_code"), `refusal said ${JSON.stringify(refusal)}`);
  steps.push(step);

  step = "the desk's code enrolls the device";
  await page.fill("#code", args.code);
  await page.tap("#enroll button[type=submit]");
  await page.waitForSelector("#who");
  const who = (await page.textContent("#who")) ?? "";
  expect(/dev-[0-9a-f]+/.test(who), `device line ${JSON.stringify(who)}`);
  // The private key is a CryptoKey kept in IndexedDB, and it cannot be read out.
  const key = await page.evaluate(async () => {
    const db = await new Promise((resolve, reject) => {
      const r = indexedDB.open("fieldsync-device");
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    const identity = await new Promise((resolve, reject) => {
      const r = db.transaction("kv").objectStore("kv").get("identity");
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    const k = identity.keys.privateKey;
    return { algorithm: k.algorithm.name, extractable: k.extractable, type: k.type, publicKey: identity.publicKey };
  });
  expect(key.algorithm === "Ed25519" && key.extractable === false && key.type === "private",
    `the device key: ${JSON.stringify(key)}`);
  expect(/^[0-9a-f]{64}$/.test(key.publicKey), `public key ${key.publicKey}`);
  steps.push(step);

  step = "the job is listed, synced and kept on the device";
  await page.waitForSelector(`${job}[data-sync="synced"][data-stored="true"]`);
  const row = page.locator(job);
  const rowText = (await row.textContent()) ?? "";
  expect(rowText.includes(args.customer), `the job row says ${JSON.stringify(rowText)}`);
  const stage = await row.getAttribute("data-stage");
  expect(stage in STAGES_ZH && rowText.includes(STAGES_ZH[stage]), `stage ${stage}, row ${JSON.stringify(rowText)}`);
  expect(rowText.includes("已同步"), `sync state in ${JSON.stringify(rowText)}`);
  const online = await page.getAttribute("#net", "data-state");
  expect(online === "online", `the network state is ${online}`);
  await page.screenshot({ path: browser.shot("jobs.png") });
  steps.push(step);

  step = "the service worker holds the app shell";
  const shell = await page.evaluate(async () => {
    const registration = await navigator.serviceWorker.ready;
    const names = await caches.keys();
    const cache = await caches.open(names.find(n => n.startsWith("fieldsync-app-")));
    const held = (await cache.keys()).map(r => new URL(r.url).pathname);
    return { scope: registration.scope, active: Boolean(registration.active), held };
  });
  expect(shell.active && new URL(shell.scope).pathname === "/app/", `service worker ${JSON.stringify(shell)}`);
  for (const file of ["/app/", "/app/index.html", "/app/app.js", "/app/automerge.wasm", "/app/app.css"]) {
    expect(shell.held.includes(file), `the shell cache lacks ${file}: ${shell.held}`);
  }
  steps.push(step);

  step = "offline, a reload opens the app and lists the job from the device";
  await context.setOffline(true);
  const reloaded = Date.now();
  await page.reload();
  await page.waitForSelector(job);
  timings.offline_reload_to_job_list_ms = Date.now() - reloaded;
  const offlineText = (await page.locator(job).textContent()) ?? "";
  expect(offlineText.includes(args.customer), `offline, the job row says ${JSON.stringify(offlineText)}`);
  const offline = await page.getAttribute("#net", "data-state");
  expect(offline === "offline", `offline, the network state is ${offline}`);
  const servedBy = await page.evaluate(() => Boolean(navigator.serviceWorker.controller));
  expect(servedBy, "offline, the page is not controlled by the service worker");
  await page.screenshot({ path: browser.shot("offline.png") });
  steps.push(step);

  step = "the language switch shows English";
  await page.tap("#lang");
  await page.waitForSelector(`${job} .stage:has-text("${STAGES_EN[stage]}")`);
  const english = (await page.textContent("h2")) ?? "";
  expect(english === "My jobs", `the heading in English: ${JSON.stringify(english)}`);
  await page.screenshot({ path: browser.shot("jobs-en.png") });
  await page.tap("#lang");
  await page.waitForSelector(`${job} .stage:has-text("${STAGES_ZH[stage]}")`);
  steps.push(step);

  step = "offline, the visit: arrival, fault cause, check-out";
  await page.tap(job);
  await page.waitForSelector("#job");
  await page.tap("#arrive");
  await page.waitForSelector("#arrived");
  await page.waitForSelector(`#job[data-stage="on_site"]`);
  await page.tap("#fault-cause");
  await page.fill("#fault-cause", args["fault-cause"]);
  await page.tap("#step-diagnosis button[type=submit]");
  await page.fill("#check-out-note", args["check-out-note"]);
  await page.tap("#step-check-out button[type=submit]");
  await page.waitForSelector("#checked-out");
  const cause = await page.inputValue("#fault-cause");
  expect(cause === args["fault-cause"], `the fault cause reads ${JSON.stringify(cause)}`);
  const pending = await page.getAttribute("#job", "data-sync");
  expect(pending === "unsynced", `offline after the visit, the job's sync state is ${pending}`);
  await page.screenshot({ path: browser.shot("job-offline.png"), fullPage: true });
  steps.push(step);

  step = "back online, the visit reaches the server";
  await context.setOffline(false);
  await page.waitForSelector(`#net[data-state="online"]`);
  await page.waitForSelector(`#job[data-sync="synced"]`);
  expect((await page.locator(".server-error").count()) === 0,
    `the server refused a change: ${await page.locator(".server-error").allTextContents()}`);
  await page.screenshot({ path: browser.shot("job.png"), fullPage: true });
  await page.tap("#back");
  await page.waitForSelector(`${job}[data-sync="synced"][data-stage="on_site"]`);
  steps.push(step);

  console.log(JSON.stringify({ ok: true, steps, timings, ms: Date.now() - started }));
} catch (e) {
  console.error(`app.mjs: step "${step}" failed: ${e.message}`);
  console.error(`the page's console:\n${consoleLines.join("\n")}`);
  try {
    console.error(`the page said: ${await browser.page.textContent("body")}`);
    await browser.page.screenshot({ path: browser.shot("failed.png"), fullPage: true });
  } catch {
    // The page is gone: what the console said is all there is.
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
