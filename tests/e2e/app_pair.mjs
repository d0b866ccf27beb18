// Two technicians, one job (issue 20): two app instances in Debian's chromium, each a phone
// (390×844, touch) with its own profile, each enrolled by its own desk code for its own
// technician (both on the job's technicians). Run by tests/it/pwa_browser.rs against a real
// `fieldsync serve`:
//
//   node tests/e2e/app_pair.mjs --base http://127.0.0.1:PORT --code-1 CODE --code-2 CODE \
//     --tech-1 tech-1 --tech-2 tech-2 --job <document id> --cause-1 TEXT --cause-2 TEXT \
//     --screenshots DIR
//
// Steps: both enroll and list the job, synced; both go offline (`context.setOffline(true)`);
// each records a different fault cause (R7); both come back online; the two documents
// converge (the same heads in both apps); each app SHOWS the conflict: both values in words,
// each with the technician who wrote it; `request completion` lists the unresolved merge as a
// missing item (the edge refuses it anyway, `unresolved_conflict`); technician 1 keeps
// technician 2's cause; both apps then read that cause and show no conflict, with the same
// heads again. Prints one JSON line (steps, the heads both apps ended on); exits 1 with the
// failing step on stderr.

import { PHONE, commandLine, openBrowser, expect } from "./browser.mjs";

const args = commandLine("app_pair.mjs", {
  "code-1": { type: "string" },
  "code-2": { type: "string" },
  "tech-1": { type: "string" },
  "tech-2": { type: "string" },
  job: { type: "string" },
  "cause-1": { type: "string" },
  "cause-2": { type: "string" },
}, ["code-1", "code-2", "tech-1", "tech-2", "job", "cause-1", "cause-2"]);

const started = Date.now();
const steps = [];
let step = "launch";
const phones = [];
const consoleLines = [];
try {
  for (const n of [1, 2]) {
    const browser = await openBrowser(args, PHONE);
    browser.page.on("console", m => consoleLines.push(`${n} ${m.type()}: ${m.text()}`));
    browser.page.on("pageerror", e => consoleLines.push(`${n} pageerror: ${e.message}`));
    phones.push({ n, tech: args[`tech-${n}`], cause: args[`cause-${n}`], code: args[`code-${n}`], ...browser });
  }
  const [one, two] = phones;
  const row = `li.job[data-job="${args.job}"]`;
  const both = f => Promise.all(phones.map(f));
  /** Waits (by polling the pages, no clock) until both apps hold the same heads of the job. */
  async function sameHeads() {
    for (let poll = 0; poll < 1200; poll += 1) {
      const [a, b] = await Promise.all(phones.map(p => p.page.getAttribute("#job", "data-heads")));
      if (a && a === b) return a;
      await one.page.waitForTimeout(100);
    }
    throw new Error("the two apps never held the same heads of the job");
  }

  step = "each phone enrolls by its own code and lists the job, synced";
  await both(async p => {
    await p.page.goto(`${p.base}/app/`);
    await p.page.waitForSelector("#enroll");
    await p.page.tap("#code");
    await p.page.fill("#code", p.code);
    await p.page.tap("#enroll button[type=submit]");
    await p.page.waitForSelector("#who");
    const who = (await p.page.textContent("#who")) ?? "";
    expect(who.includes(p.tech), `phone ${p.n} is ${JSON.stringify(who)}`);
    await p.page.waitForSelector(`${row}[data-sync="synced"][data-stored="true"]`);
  });
  steps.push(step);

  step = "offline, each technician records a different fault cause";
  await both(async p => {
    await p.context.setOffline(true);
    await p.page.waitForSelector(`#net[data-state="offline"]`);
    await p.page.tap(row);
    await p.page.waitForSelector("#job");
    await p.page.tap("#fault-cause");
    await p.page.fill("#fault-cause", p.cause);
    await p.page.tap("#step-diagnosis button[type=submit]");
    await p.page.waitForSelector(`#job[data-sync="unsynced"]`);
    // Offline, each phone has only its own value: nothing to resolve yet.
    expect((await p.page.locator("#conflicts").count()) === 0, `phone ${p.n} shows a conflict offline`);
  });
  steps.push(step);

  step = "back online, the two documents converge";
  await both(p => p.context.setOffline(false));
  await both(p => p.page.waitForSelector(`#net[data-state="online"]`));
  await both(p => p.page.waitForSelector(`#job[data-sync="synced"]`));
  // The same heads in both apps: each has the other's change (the server relayed both).
  let heads = await sameHeads();
  expect(heads.split(" ").length >= 2, `after merging two offline edits the heads are ${heads}`);
  steps.push(step);

  step = "each app shows the conflict: both causes, each with who wrote it";
  const shown = [];
  for (const p of phones) {
    await p.page.waitForSelector(`#conflicts fieldset[data-field="diagnosis.fault_cause"]`);
    const values = await p.page.$$eval(
      `#conflicts fieldset[data-field="diagnosis.fault_cause"] label`,
      labels => labels.map(l => ({ by: l.dataset.by, text: l.textContent })),
    );
    for (const q of phones) {
      expect(values.some(v => v.by === q.tech && v.text.includes(q.cause) && v.text.includes(`${q.tech} 写于`)),
        `phone ${p.n} does not show ${q.tech}'s ${JSON.stringify(q.cause)}: ${JSON.stringify(values)}`);
    }
    expect(values.length === 2, `phone ${p.n}: ${JSON.stringify(values)}`);
    shown.push(values);
  }
  await one.page.locator("#conflicts").scrollIntoViewIfNeeded();
  await one.page.screenshot({ path: one.shot("conflict.png") });
  steps.push(step);

  step = "request completion lists the unresolved merge as missing";
  await one.page.tap("#request-completion");
  await one.page.waitForSelector(`#missing li[data-code="unresolved_conflict"]`);
  const missing = (await one.page.textContent(`#missing li[data-code="unresolved_conflict"]`)) ?? "";
  expect(missing.includes("尚未解决"), `the missing item in words: ${JSON.stringify(missing)}`);
  expect((await one.page.locator("#report").count()) === 0, "the report was shown over a conflict");
  steps.push(step);

  step = "technician 1 keeps technician 2's cause; both apps agree and show no conflict";
  await one.page.locator(`#conflicts label[data-by="${two.tech}"]`).first().tap();
  await one.page.tap("#keep-work");
  await both(async p => {
    await p.page.waitForFunction(() => document.querySelector("#conflicts") === null);
    await p.page.waitForFunction(c => document.querySelector("#fault-cause")?.value === c, two.cause);
    await p.page.waitForSelector(`#job[data-sync="synced"]`);
  });
  const missingAfter = await one.page.locator(`#missing li[data-code="unresolved_conflict"]`).count();
  expect(missingAfter === 0, "the resolved conflict is still listed as missing");
  heads = await sameHeads();
  expect((await one.page.locator(".server-error").count()) === 0 && (await two.page.locator(".server-error").count()) === 0,
    `the server refused a change: ${await one.page.locator(".server-error").allTextContents()} ${await two.page.locator(".server-error").allTextContents()}`);
  await two.page.screenshot({ path: two.shot("conflict-resolved.png") });
  steps.push(step);

  console.log(JSON.stringify({ ok: true, steps, shown, heads: heads.split(" "), ms: Date.now() - started }));
} catch (e) {
  console.error(`app_pair.mjs: step "${step}" failed: ${e.message}`);
  console.error(`the pages' console:\n${consoleLines.join("\n")}`);
  for (const p of phones) {
    try {
      console.error(`phone ${p.n} said: ${await p.page.textContent("body")}`);
      await p.page.screenshot({ path: p.shot(`failed-pair-${p.n}.png`), fullPage: true });
    } catch {
      // The page is gone.
    }
  }
  process.exitCode = 1;
} finally {
  for (const p of phones) await p.close();
}
