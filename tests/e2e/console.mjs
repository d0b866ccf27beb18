// The web console in a real browser (issue 14): Debian's chromium, driven by playwright-core,
// with JavaScript disabled in the page (the console serves none: everything must work
// without it). Run by tests/it/console_browser.rs against a real `fieldsync serve`:
//
//   node tests/e2e/console.mjs --base http://127.0.0.1:PORT --user li --password PW \
//     --customers "华东机械厂,Lotus Foods" --job-customer 华东机械厂 --screenshots DIR
//
// Steps: `/` leads to the sign-in page; a wrong password is refused; the right one opens the
// board, which lists the jobs the API created (each customer in --customers); a job page opens
// from the board; a POST without the form's CSRF token is refused and changes nothing; the
// keyboard reaches the skip link first; the dispatcher registers a request on the intake form
// ("now" is filled in; upright on a 768 px tablet nothing scrolls sideways) and dispatches it to --technician with an appointment at --appointment
// (a time in the branch's zone), landing on the new job's page; sign-out ends the session;
// then --manager signs in, finds the approval request whose reason is --approval-reason (a
// device raised it) on the approvals page and approves it. Screenshots of the sign-in page,
// the board, the job page, the intake form and the approvals page go to --screenshots. Prints
// one JSON line with the steps and the run time; exits 1 with the failing step on stderr.

import { commandLine, openBrowser, expect } from "./browser.mjs";

const args = commandLine("console.mjs", {
  user: { type: "string" },
  password: { type: "string" },
  customers: { type: "string", default: "" },
  "job-customer": { type: "string" },
  technician: { type: "string" },
  appointment: { type: "string" },
  manager: { type: "string" },
  "manager-password": { type: "string" },
  "approval-reason": { type: "string" },
  zone: { type: "string", default: "" },
}, ["user", "password", "job-customer", "technician",
  "appointment", "manager", "manager-password", "approval-reason"]);

const started = Date.now();
const steps = [];
let step = "launch";
const browser = await openBrowser(args);

try {
  const { page, base } = browser;

  step = "root leads to sign-in";
  await page.goto(`${base}/`);
  expect(new URL(page.url()).pathname === "/login", `/ led to ${page.url()}`);
  await page.screenshot({ path: browser.shot("login.png") });
  steps.push(step);

  step = "wrong password refused";
  await page.fill("#name", args.user);
  await page.fill("#password", `${args.password}-wrong`);
  await page.click("button[type=submit].primary");
  const refusal = (await page.textContent("#login-message")) ?? "";
  expect(refusal.includes("用户名或密码错误"), `refusal said ${JSON.stringify(refusal)}`);
  expect(new URL(page.url()).pathname === "/login", `after a wrong password: ${page.url()}`);
  steps.push(step);

  step = "sign in opens the board";
  await page.fill("#name", args.user);
  await page.fill("#password", args.password);
  await page.click("button[type=submit].primary");
  expect(new URL(page.url()).pathname === "/board", `signed in to ${page.url()}`);
  const table = (await page.textContent("#jobs")) ?? "";
  for (const customer of args.customers.split(",").filter(Boolean)) {
    expect(table.includes(customer), `the board does not list ${customer}: ${table}`);
  }
  await page.screenshot({ path: browser.shot("board.png"), fullPage: true });
  steps.push(step);

  step = "keyboard reaches the skip link first";
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement?.className ?? "");
  expect(focused === "skip", `the first Tab focused ${JSON.stringify(focused)}`);
  steps.push(step);

  step = "a job page opens from the board";
  await page.click(`#jobs a:has-text("${args["job-customer"]}")`);
  expect(new URL(page.url()).pathname.startsWith("/jobs/"), `job link led to ${page.url()}`);
  const heading = (await page.textContent("h1")) ?? "";
  expect(heading.includes(args["job-customer"]), `job page heading ${JSON.stringify(heading)}`);
  await page.screenshot({ path: browser.shot("job.png"), fullPage: true });
  steps.push(step);

  step = "a POST without the CSRF token is refused";
  const forged = await page.request.post(`${base}/logout`, { form: { csrf: "forged" }, maxRedirects: 0 });
  expect(forged.status() === 403, `logout without the token answered ${forged.status()}`);
  await page.goto(`${base}/board`);
  expect(new URL(page.url()).pathname === "/board", `after the refused POST: ${page.url()}`);
  steps.push(step);

  step = "intake registers a request";
  await page.click("nav a[href='/intake']");
  expect(new URL(page.url()).pathname === "/intake", `intake link led to ${page.url()}`);
  const now = await page.inputValue("#received_at");
  expect(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/.test(now), `received_at defaults to ${JSON.stringify(now)}`);
  if (args.zone) {
    const footer = (await page.textContent("footer")) ?? "";
    expect(footer.includes(args.zone), `times are not said to be in ${args.zone}: ${footer}`);
  }
  // A tablet held upright: the form fits, nothing scrolls sideways.
  await page.setViewportSize({ width: 768, height: 1024 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(wide <= 768, `the intake form is ${wide} px wide on a 768 px screen`);
  await page.setViewportSize({ width: 1024, height: 768 });
  await page.selectOption("#channel", "phone");
  await page.fill("#customer_id", "c-e2e-1");
  await page.fill("#customer_name", "浦东冷链物流");
  await page.fill("#contact", "王经理 139 0000 0000");
  await page.fill("#site_address", "上海市浦东新区 100 号");
  await page.fill("#model", "CH-700");
  await page.fill("#serial", "SN-E2E-1");
  await page.fill("#product_type", "chiller");
  await page.fill("#fault_description", "冷库温度降不下来");
  await page.screenshot({ path: browser.shot("intake.png"), fullPage: true });
  await page.click("#intake-form button[type=submit]");
  expect(new URL(page.url()).pathname.startsWith("/requests/"), `intake led to ${page.url()}`);
  const registered = (await page.textContent("#notice")) ?? "";
  expect(registered.includes("报修已登记"), `intake notice ${JSON.stringify(registered)}`);
  steps.push(step);

  step = "dispatch it with an appointment";
  await page.fill("#technician", args.technician);
  await page.fill("#appointment_at", args.appointment);
  await page.click("#dispatch-form button[type=submit]");
  expect(new URL(page.url()).pathname.startsWith("/jobs/"), `dispatch led to ${page.url()}: ${await page.textContent("main")}`);
  const dispatched = (await page.textContent("#notice")) ?? "";
  expect(dispatched.includes("已派工"), `dispatch notice ${JSON.stringify(dispatched)}`);
  const jobHeading = (await page.textContent("h1")) ?? "";
  expect(jobHeading.includes("浦东冷链物流"), `dispatched job heading ${JSON.stringify(jobHeading)}`);
  await page.goto(`${base}/board`);
  const listed = (await page.textContent("#jobs")) ?? "";
  expect(listed.includes("浦东冷链物流"), `the board does not list the dispatched job: ${listed}`);
  steps.push(step);

  step = "sign out";
  await page.click("form[action='/logout'] button");
  expect(new URL(page.url()).pathname === "/login", `signed out to ${page.url()}`);
  const notice = (await page.textContent("#login-message")) ?? "";
  expect(notice.includes("已退出"), `sign-out notice ${JSON.stringify(notice)}`);
  await page.goto(`${base}/board`);
  expect(new URL(page.url()).pathname === "/login", `the board after sign-out: ${page.url()}`);
  steps.push(step);

  step = "a manager decides the approval a device raised";
  await page.fill("#name", args.manager);
  await page.fill("#password", args["manager-password"]);
  await page.click("button[type=submit].primary");
  await page.goto(`${base}/approvals`);
  const card = page.locator(`li.card:has-text("${args["approval-reason"]}")`);
  expect((await card.count()) === 1, `the approvals page does not list ${args["approval-reason"]}`);
  await page.setViewportSize({ width: 768, height: 1024 });
  const approvalsWide = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(approvalsWide <= 768, `the approvals page is ${approvalsWide} px wide on a 768 px screen`);
  await page.setViewportSize({ width: 1024, height: 768 });
  await page.screenshot({ path: browser.shot("approvals.png"), fullPage: true });
  await card.locator("textarea[name=note]").fill("同意，按保修处理");
  await card.locator("button[value=approve]").click();
  expect(new URL(page.url()).pathname === "/approvals", `deciding led to ${page.url()}`);
  const decided = (await page.textContent("#notice")) ?? "";
  expect(decided.includes("审批已记录"), `decision notice ${JSON.stringify(decided)}`);
  const decidedTable = (await page.textContent("#decided")) ?? "";
  expect(decidedTable.includes(args["approval-reason"]) && decidedTable.includes("同意，按保修处理"), `decided table: ${decidedTable}`);
  steps.push(step);

  console.log(JSON.stringify({ ok: true, steps, ms: Date.now() - started }));
} catch (e) {
  console.error(`console.mjs: step "${step}" failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
