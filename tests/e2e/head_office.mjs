// Head office's console pages in a real browser (issue 14, point 4): Debian's chromium,
// driven by playwright-core, JavaScript disabled in the page. Run by
// tests/it/console_browser.rs against a head office that archived a verified report:
//
//   node tests/e2e/head_office.mjs --base http://127.0.0.1:PORT --user zhao --password PW \
//     --month 2026-12 --report REPORT_ID --branch north-01 --screenshots DIR
//
// Steps: sign in leads to the archive; the month's archive lists the report; its page shows
// the report in plain language and links the PDF; the month's statistics show the chart with
// the month's count and the complaint table; the quality digest names the branch's fault;
// the rejected list is empty. Screenshots of the
// archive, the report and the statistics go to --screenshots. Prints one JSON line; exits 1
// with the failing step on stderr.

import { commandLine, openBrowser, expect } from "./browser.mjs";

const args = commandLine("head_office.mjs", {
  user: { type: "string" },
  password: { type: "string" },
  month: { type: "string" },
  report: { type: "string" },
  branch: { type: "string" },
}, ["user", "password", "month", "report", "branch"]);

const started = Date.now();
const steps = [];
let step = "launch";
const browser = await openBrowser(args);

try {
  const { page, base } = browser;

  step = "sign in leads to the archive";
  await page.goto(`${base}/`);
  expect(new URL(page.url()).pathname === "/login", `/ led to ${page.url()}`);
  await page.fill("#name", args.user);
  await page.fill("#password", args.password);
  await page.click("button[type=submit].primary");
  expect(new URL(page.url()).pathname === "/archive", `signed in to ${page.url()}`);
  steps.push(step);

  step = "the month's archive lists the report";
  await page.fill("input[name=month]", args.month);
  await page.click("form.filters button[type=submit]");
  const table = (await page.textContent("#reports")) ?? "";
  expect(table.includes(args.report), `the archive does not list ${args.report}: ${table}`);
  expect(table.includes(args.branch), `the archive does not name ${args.branch}`);
  await page.screenshot({ path: browser.shot("archive.png"), fullPage: true });
  steps.push(step);

  step = "the report in plain language";
  await page.click("#reports tbody a");
  expect(new URL(page.url()).pathname === `/archive/${args.report}`, `report link led to ${page.url()}`);
  const text = (await page.textContent("#report-text")) ?? "";
  expect(text.includes(args.report), `the report page does not show its id`);
  const pdf = await page.request.get(`${base}/archive/${args.report}/report.pdf`);
  expect(pdf.status() === 200, `the PDF answered ${pdf.status()}`);
  expect((pdf.headers()["content-type"] ?? "") === "application/pdf", "the PDF is not a PDF");
  await page.screenshot({ path: browser.shot("ho-report.png"), fullPage: true });
  steps.push(step);

  step = "the month's statistics with the chart";
  await page.click("nav a[href='/statistics']");
  await page.fill("input[name=month]", args.month);
  await page.click("form.filters button[type=submit]");
  const bars = await page.locator("#chart rect").count();
  expect(bars === 6, `the chart has ${bars} bars`);
  const chart = (await page.innerHTML("#chart")) ?? "";
  expect(chart.includes(`${args.month}: 1`), `the chart does not count the report: ${chart}`);
  const complaints = (await page.textContent("#complaints")) ?? "";
  expect(complaints.includes(args.branch), `the complaint table does not name ${args.branch}`);
  await page.screenshot({ path: browser.shot("statistics.png"), fullPage: true });
  steps.push(step);

  step = "the quality digest (R27)";
  await page.click("nav a[href='/quality']");
  await page.fill("input[name=month]", args.month);
  await page.click("form.filters button[type=submit]");
  const faults = (await page.textContent("#faults")) ?? "";
  expect(faults.includes(args.branch), `the digest does not name ${args.branch}: ${faults}`);
  await page.screenshot({ path: browser.shot("quality.png"), fullPage: true });
  steps.push(step);

  step = "nothing was kept aside";
  await page.click("nav a[href='/rejected']");
  expect((await page.locator("#no-rejected").count()) === 1, "the rejected list is not empty");
  steps.push(step);

  console.log(JSON.stringify({ ok: true, steps, ms: Date.now() - started }));
} catch (e) {
  console.error(`head_office.mjs: step "${step}" failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
