// A revoked device is told so and stops syncing (issue 20): Debian's chromium as a phone
// (390×844, touch), run by tests/it/pwa_browser.rs against a real `fieldsync serve`:
//
//   node tests/e2e/app_revoked.mjs --base http://127.0.0.1:PORT --code CODE --job <id> \
//     --fieldsync BIN --data-dir DIR --screenshots DIR
//
// Steps: the app enrolls by the desk's code and lists the job, synced; the desk revokes the
// device with the real CLI (`fieldsync device revoke`, another process: the running server
// notices and closes the device's socket); the app says it was revoked, in Chinese and in
// English, and stops: over a bounded number of steps that do not depend on the wall clock
// (the page's timers driven by Playwright's fake clock, 3 × 30 s; offline and online again;
// a reload) the page opens no WebSocket (counted with page.on("websocket")). Then the next
// connection path: with the kept "revoked" mark removed from IndexedDB and the page
// reloaded, the app dials with its still-valid token, is refused before the upgrade (401,
// which a browser sees only as 1006), asks the renewal why, is told `revoked`, and stops
// again. Prints one JSON line (steps, the WebSocket counts); exits 1 with the failing step.

import { execFileSync } from "node:child_process";
import { PHONE, commandLine, openBrowser, expect } from "./browser.mjs";

const args = commandLine("app_revoked.mjs", {
  code: { type: "string" },
  job: { type: "string" },
  fieldsync: { type: "string" },
  "data-dir": { type: "string" },
}, ["code", "job", "fieldsync", "data-dir"]);

const started = Date.now();
const steps = [];
const sockets = {};
let step = "launch";
const browser = await openBrowser(args, PHONE);
const consoleLines = [];
try {
  const { page, context, base } = browser;
  page.on("console", m => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", e => consoleLines.push(`pageerror: ${e.message}`));
  let opened = 0;
  page.on("websocket", () => {
    opened += 1;
  });
  const row = `li.job[data-job="${args.job}"]`;
  /** The page's timers run `ms` of fake time ahead, at once: whatever retries on a timer
   *  (the adapter's reconnect, the renewal tick) gets its chances, with no waiting. */
  const timePasses = ms => page.clock.runFor(ms);

  step = "the app enrolls by code and lists the job, synced";
  await page.clock.install();
  await page.goto(`${base}/app/`);
  await page.waitForSelector("#enroll");
  await page.tap("#code");
  await page.fill("#code", args.code);
  await page.tap("#enroll button[type=submit]");
  await page.waitForSelector("#who");
  await page.waitForSelector(`${row}[data-sync="synced"]`);
  await page.waitForSelector(`#net[data-state="online"]`);
  expect(opened >= 1, `no WebSocket was opened: ${opened}`);
  const deviceId = /dev-[0-9a-f]+/.exec((await page.textContent("#who")) ?? "")?.[0];
  expect(deviceId, "the device id is not shown");
  sockets.before_revocation = opened;
  steps.push(step);

  step = "the desk revokes the device with the CLI; the app says so in words";
  const env = { ...process.env, FIELDSYNC_LOG: "warn", FIELDSYNC_BRANCH_ID: "north-01" };
  delete env.FIELDSYNC_CONFIG;
  const out = execFileSync(args.fieldsync, ["device", "revoke", "--device", deviceId, "--data-dir", args["data-dir"]], { env });
  expect(JSON.parse(out.toString()).revoked === true, `fieldsync device revoke said ${out}`);
  await page.waitForSelector(`#net[data-state="revoked"]`);
  await page.waitForSelector("#revoked");
  const zh = `${await page.textContent("#net")} ${await page.textContent("#revoked")}`;
  expect(zh.includes("此设备已被停用") && zh.includes("重新登记"), `in Chinese: ${JSON.stringify(zh)}`);
  await page.screenshot({ path: browser.shot("revoked.png") });
  await page.tap("#lang");
  await page.waitForSelector(`#net:has-text("revoked")`);
  const en = `${await page.textContent("#net")} ${await page.textContent("#revoked")}`;
  expect(en.includes("This device was revoked") && en.includes("enroll again"), `in English: ${JSON.stringify(en)}`);
  await page.tap("#lang");
  // Said as the device's state, not as a change the server refused.
  const refusedChanges = await page.locator(".server-error").allTextContents();
  expect(refusedChanges.length === 0, `the revocation shown as a refused change: ${refusedChanges}`);
  // The job is still listed from the device.
  expect((await page.locator(row).count()) === 1, "the job is gone from the list");
  steps.push(step);

  step = "it stops: no WebSocket over timers, offline and online, and a reload";
  const afterRevocation = opened;
  for (let round = 0; round < 3; round += 1) await timePasses(30_000);
  sockets.after_timers = opened - afterRevocation;
  await context.setOffline(true);
  await page.waitForSelector(`#net[data-state="revoked"]`);
  await context.setOffline(false);
  await timePasses(30_000);
  await page.reload();
  await page.waitForSelector(row);
  await page.waitForSelector(`#net[data-state="revoked"]`);
  await timePasses(30_000);
  sockets.after_all_steps = opened - afterRevocation;
  expect(sockets.after_all_steps === 0, `the page dialled ${sockets.after_all_steps} times after the revocation`);
  steps.push(step);

  step = "the next connection: refused, the renewal says revoked, and it stops again";
  await page.evaluate(async () => {
    const db = await new Promise((resolve, reject) => {
      const r = indexedDB.open("fieldsync-device");
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    await new Promise((resolve, reject) => {
      const tx = db.transaction("kv", "readwrite");
      tx.objectStore("kv").delete("revoked");
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
    });
    db.close();
  });
  const beforeReload = opened;
  await page.reload();
  await page.waitForSelector(`#net[data-state="revoked"]`);
  await page.waitForSelector("#revoked");
  const dialled = opened - beforeReload;
  // Once, or again if the adapter's retry came before the renewal's answer; then never.
  expect(dialled >= 1, `the reloaded page did not dial: ${dialled}`);
  for (let round = 0; round < 3; round += 1) await timePasses(30_000);
  sockets.second_path_dialled = dialled;
  sockets.second_path_after = opened - beforeReload - dialled;
  expect(sockets.second_path_after === 0, `then dialled ${sockets.second_path_after} more times`);
  steps.push(step);

  console.log(JSON.stringify({ ok: true, steps, sockets, device: deviceId, ms: Date.now() - started }));
} catch (e) {
  console.error(`app_revoked.mjs: step "${step}" failed: ${e.message}`);
  console.error(`the page's console:\n${consoleLines.join("\n")}`);
  try {
    console.error(`the page said: ${await browser.page.textContent("body")}`);
    await browser.page.screenshot({ path: browser.shot("failed-revoked.png"), fullPage: true });
  } catch {
    // The page is gone.
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
