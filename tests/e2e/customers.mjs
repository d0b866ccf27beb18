// Customer files and technicians in a real browser (issue 14, point 3): Debian's chromium,
// driven by playwright-core, JavaScript disabled in the page. Run by
// tests/it/console_browser.rs against a branch with jobs for a customer and a technician:
//
//   node tests/e2e/customers.mjs --base http://127.0.0.1:PORT --user li --password PW \
//     --customer c-1001 --technician tech-1 --due 2027-01-15 --screenshots DIR
//
// Steps: the customer's file asks for sign-in and comes back after it; it shows the product
// with its repair history (R6); the dispatcher sets a maintenance plan with the form (R26)
// and the file shows it; the technician's page shows the record (R2, R4, R7, R11, R15). Saves
// customer.png and technician.png. Prints one JSON line; exits 1 with the failing step.

import { commandLine, openBrowser, expect } from "./browser.mjs";

const args = commandLine("customers.mjs", {
  user: { type: "string" },
  password: { type: "string" },
  customer: { type: "string" },
  technician: { type: "string" },
  due: { type: "string" },
}, ["user", "password", "customer", "technician", "due"]);

const started = Date.now();
const steps = [];
let step = "launch";
const browser = await openBrowser(args);

try {
  const { page, base } = browser;
  const file = `/customers/${args.customer}`;

  step = "the customer's file asks for sign-in and comes back";
  await page.goto(`${base}${file}`);
  expect(new URL(page.url()).pathname === "/login", `the file led to ${page.url()}`);
  await page.fill("#name", args.user);
  await page.fill("#password", args.password);
  await page.click("button[type=submit].primary");
  expect(new URL(page.url()).pathname === file, `signed in to ${page.url()}`);
  steps.push(step);

  step = "the file shows the product and its repair history (R6)";
  const history = (await page.textContent("table.history")) ?? "";
  expect(history.length > 0, "no repair history table");
  steps.push(step);

  step = "the dispatcher sets a maintenance plan (R26)";
  await page.fill("form.plan-form input[name=interval_months]", "6");
  await page.fill("form.plan-form input[name=next_due]", args.due);
  await page.fill("form.plan-form input[name=technician]", args.technician);
  await page.click("form.plan-form button.primary");
  expect(new URL(page.url()).pathname === file, `the plan form led to ${page.url()}`);
  const notice = (await page.textContent("#notice")) ?? "";
  expect(notice.length > 0, "no notice after the plan form");
  const plan = (await page.textContent("dd.plan")) ?? "";
  expect(plan.includes(args.due), `the plan does not show ${args.due}: ${plan}`);
  await page.screenshot({ path: browser.shot("customer.png"), fullPage: true });
  steps.push(step);

  step = "the technician's page shows the record";
  await page.goto(`${base}/technicians/${args.technician}`);
  const record = (await page.textContent("#record")) ?? "";
  expect(record.includes("R2") && record.includes("R15"), `the record: ${record}`);
  const jobs = (await page.textContent("#jobs")) ?? "";
  expect(jobs.length > 0, "no jobs on the technician's page");
  await page.screenshot({ path: browser.shot("technician.png"), fullPage: true });
  steps.push(step);

  console.log(JSON.stringify({ ok: true, steps, ms: Date.now() - started }));
} catch (e) {
  console.error(`step "${step}" failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
