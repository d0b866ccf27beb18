// The desk's records in a real browser (issue 14, point 2): complaints (R20–R23), parts
// requisitions (R17) and the tool register (R19). Debian's chromium, driven by
// playwright-core, JavaScript disabled in the page. Run by tests/it/console_browser.rs
// against a real `fieldsync serve` holding a complaint at R21 step 2, a requisition and a
// tool on loan:
//
//   node tests/e2e/desk_records.mjs --base http://127.0.0.1:PORT --user li --password PW \
//     --complainant 陈女士 --part CMP-7 --tool torque-07 --holder tech-1 --screenshots DIR
//
// Steps: sign in; the nav leads to the complaints page, which lists the complaint at step 2
// of 8 (upright on a 768 px tablet nothing scrolls sideways); its page shows the eight steps
// and the dispatcher records step 2 (valid) with the form, after which step 2 is done and
// step 3 is next; the requisitions page lists the requisition waiting for shipment; the
// tools page shows who holds the tool. Screenshots of the complaints page, the complaint,
// the requisitions and the tools go to --screenshots. Prints one JSON line with the steps
// and the run time; exits 1 with the failing step on stderr.

import { commandLine, openBrowser, expect } from "./browser.mjs";

const args = commandLine("desk_records.mjs", {
  user: { type: "string" },
  password: { type: "string" },
  complainant: { type: "string" },
  part: { type: "string" },
  tool: { type: "string" },
  holder: { type: "string" },
}, ["user", "password", "complainant", "part", "tool", "holder"]);

const started = Date.now();
const steps = [];
let step = "launch";
const browser = await openBrowser(args);

/// Nothing scrolls sideways upright on a 768 px tablet.
async function fitsTablet(page, what) {
  await page.setViewportSize({ width: 768, height: 1024 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(wide <= 768, `${what} is ${wide} px wide on a 768 px screen`);
  await page.setViewportSize({ width: 1024, height: 768 });
}

try {
  const { page, base } = browser;

  step = "sign in";
  await page.goto(`${base}/login?next=/complaints`);
  await page.fill("#name", args.user);
  await page.fill("#password", args.password);
  await page.click("button[type=submit].primary");
  expect(new URL(page.url()).pathname === "/complaints", `signed in to ${page.url()}`);
  steps.push(step);

  step = "the complaints list the complaint at step 2 of 8";
  await page.click("nav a[href='/board']");
  await page.click("nav a[href='/complaints']");
  const table = (await page.textContent("#complaints")) ?? "";
  expect(table.includes(args.complainant), `the list does not name ${args.complainant}: ${table}`);
  expect(table.includes("2/8"), `the complaint is not at step 2: ${table}`);
  const received = (await page.locator("#summary dd").first().textContent()) ?? "";
  expect(received.trim() === "1", `the month's summary counts ${received} complaints`);
  await fitsTablet(page, "the complaints page");
  await page.screenshot({ path: browser.shot("complaints.png"), fullPage: true });
  steps.push(step);

  step = "record step 2 on the complaint's page";
  await page.click(`#complaints a:has-text("${args.complainant}")`);
  expect(new URL(page.url()).pathname.startsWith("/complaints/cmp"), `opened ${page.url()}`);
  expect((await page.locator("#steps > li").count()) === 8, "not eight steps");
  await page.check("#valid-yes");
  await page.fill("#what", "查看服务记录，投诉属实");
  await page.click("#step-form button[type=submit]");
  const notice = (await page.textContent("#notice")) ?? "";
  expect(notice.includes("步骤已记录"), `after the step: ${notice}`);
  const done = (await page.textContent("#step-classify")) ?? "";
  expect(done.includes("已完成") && done.includes("查看服务记录"), `step 2 reads ${done}`);
  const next = (await page.textContent("#step-assign_unit")) ?? "";
  expect(next.includes("下一步"), `step 3 reads ${next}`);
  await fitsTablet(page, "the complaint's page");
  await page.screenshot({ path: browser.shot("complaint.png"), fullPage: true });
  steps.push(step);

  step = "the requisitions";
  await page.click("nav a[href='/requisitions']");
  const waiting = (await page.textContent("#waiting")) ?? "";
  expect(waiting.includes(args.part), `the requisition for ${args.part} is not waiting: ${waiting}`);
  await fitsTablet(page, "the requisitions page");
  await page.screenshot({ path: browser.shot("requisitions.png"), fullPage: true });
  steps.push(step);

  step = "the tools and who holds them";
  await page.click("nav a[href='/tools']");
  const card = (await page.textContent(`#tool-${args.tool}`)) ?? "";
  expect(card.includes(args.holder) && card.includes("借出中"), `the tool reads ${card}`);
  await fitsTablet(page, "the tools page");
  await page.screenshot({ path: browser.shot("tools.png"), fullPage: true });
  steps.push(step);

  console.log(JSON.stringify({ ok: true, steps, ms: Date.now() - started }));
} catch (e) {
  console.error(`desk_records.mjs: step "${step}" failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
