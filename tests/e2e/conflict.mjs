// A merge conflict resolved by the desk in a real browser (issue 14, point 2; R7, R10):
// Debian's chromium, JavaScript off in the page. Run by tests/it/console_conflicts.rs after
// two technicians' devices (the SDK) wrote the work of --job offline and synced, so the
// signer refused the report with `unresolved_conflict`:
//
//   node tests/e2e/conflict.mjs --base http://127.0.0.1:PORT --user li --password PW \
//     --job JOB --authors tech-wang,tech-li --values "Worn relay contacts,Low refrigerant" \
//     --keep "Worn relay contacts" --screenshots DIR
//
// Steps: the dispatcher signs in and opens the job page; the conflicts section lists each
// value in --values with each technician in --authors as its writer, with a time (upright on
// a 768 px tablet nothing scrolls sideways; screenshot conflict.png); the keyboard reaches
// the resolve form's first choice; the dispatcher picks --keep for the fault cause (and the
// same technician's other values) and resolves; the page says so, lists the resolution under
// the dispatcher's name and shows no conflict; then (while the runner has the device sign
// and complete the resolved job) the page is reloaded until the report shows as signed
// (screenshot conflict-signed.png). Prints one JSON line with the steps and the run time;
// exits 1 with the failing step on stderr.

import { commandLine, openBrowser, expect } from "./browser.mjs";

const args = commandLine("conflict.mjs", {
  user: { type: "string" },
  password: { type: "string" },
  job: { type: "string" },
  authors: { type: "string" },
  values: { type: "string" },
  keep: { type: "string" },
  "signed-within": { type: "string", default: "90" },
}, ["user", "password", "job", "authors", "values", "keep"]);

const started = Date.now();
const steps = [];
let step = "launch";
const browser = await openBrowser(args);

try {
  const { page, base } = browser;
  const jobPath = `/jobs/${args.job}`;

  step = "sign in and open the job";
  await page.goto(`${base}/login?next=${encodeURIComponent(jobPath)}`);
  await page.fill("#name", args.user);
  await page.fill("#password", args.password);
  await page.click("button[type=submit].primary");
  if (new URL(page.url()).pathname !== jobPath) await page.goto(`${base}${jobPath}`);
  expect(new URL(page.url()).pathname === jobPath, `signed in to ${page.url()}`);
  steps.push(step);

  step = "the conflict shows each value with its author and time";
  const section = (await page.textContent("#conflicts")) ?? "";
  for (const value of args.values.split(",")) {
    expect(section.includes(value), `the conflicts do not show ${value}: ${section}`);
  }
  for (const author of args.authors.split(",")) {
    const writers = await page.locator("#conflicts .writer", { hasText: author }).count();
    expect(writers > 0, `the conflicts do not name ${author}: ${section}`);
  }
  const times = await page.locator("#conflicts .who time").allTextContents();
  expect(times.length > 0 && times.every((t) => /\d{4}-\d{2}-\d{2}/.test(t)), `times shown: ${JSON.stringify(times)}`);
  await page.setViewportSize({ width: 768, height: 1024 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(wide <= 768, `the job page is ${wide} px wide on a 768 px screen`);
  await page.locator("#conflicts").scrollIntoViewIfNeeded();
  await page.screenshot({ path: browser.shot("conflict.png"), fullPage: true });
  await page.setViewportSize({ width: 1024, height: 768 });
  steps.push(step);

  step = "the keyboard reaches the resolve form";
  await page.goto(`${base}${jobPath}`);
  let reached = false;
  for (let i = 0; i < 80 && !reached; i++) {
    await page.keyboard.press("Tab");
    reached = await page.evaluate(() => {
      const a = document.activeElement;
      return a?.type === "radio" && a.closest("#group-work") !== null;
    });
  }
  expect(reached, "Tab never reaches a choice of the resolve form");
  steps.push(step);

  step = "the dispatcher resolves with the form";
  const form = page.locator("#group-work");
  await form.locator(`input[name=fault_cause][value="${args.keep}"]`).check();
  // The rest of the work as the same technician wrote it: the choice whose writers include
  // the author of the kept fault cause.
  const keptLabel = form.locator("label.choice", { has: page.locator(`input[name=fault_cause][value="${args.keep}"]`) });
  const keptAuthor = ((await keptLabel.locator(".writer").first().textContent()) ?? "").trim();
  for (const name of ["solution", "labour_minutes"]) {
    const choice = form.locator("label.choice", { has: page.locator(`input[name=${name}]`), hasText: keptAuthor });
    if ((await choice.count()) > 0) await choice.first().locator("input[type=radio]").check();
  }
  await form.locator("button[type=submit]").click();
  expect(new URL(page.url()).pathname === jobPath, `resolving led to ${page.url()}`);
  const notice = (await page.textContent("#notice")) ?? "";
  expect(notice.includes("冲突已解决"), `resolve notice ${JSON.stringify(notice)}`);
  expect((await page.locator("#conflicts").count()) === 0, "a conflict is still shown");
  const resolutions = (await page.textContent("#resolutions")) ?? "";
  expect(resolutions.includes(`desk:${args.user}`) && resolutions.includes(args.keep), `resolutions: ${resolutions}`);
  steps.push(step);

  step = "the report is signed";
  const deadline = Date.now() + Number(args["signed-within"]) * 1000;
  let status = "";
  for (;;) {
    await page.goto(`${base}${jobPath}`);
    status = (await page.textContent("#job-status")) ?? "";
    if (status.includes("已签发") || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  expect(status.includes("已签发"), `the job page says ${JSON.stringify(status)}`);
  const report = (await page.textContent("main")) ?? "";
  expect(report.includes(keptAuthor) || report.includes(args.keep), `the signed job shows ${report}`);
  await page.setViewportSize({ width: 768, height: 1024 });
  const signedWide = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(signedWide <= 768, `the signed job's page is ${signedWide} px wide on a 768 px screen`);
  await page.setViewportSize({ width: 1024, height: 768 });
  const desktopWide = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(desktopWide <= 1024, `the signed job's page is ${desktopWide} px wide on a 1024 px screen`);
  await page.screenshot({ path: browser.shot("conflict-signed.png"), fullPage: true });
  steps.push(step);

  console.log(JSON.stringify({ ok: true, steps, ms: Date.now() - started }));
} catch (e) {
  console.error(`conflict.mjs: step "${step}" failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
