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
// language switch shows English; still offline the technician records the appointment call
// (R3, refused in words with no time) and the safety briefing (R32), arrival (R2), the fault
// cause (R7), two parts (R7, R10, R18) of which one is removed again, labour and travel (R10),
// a photo (`setInputFiles` with a small PNG, listed as waiting for the upload) and the
// check-out (R11), which the job shows as not yet synced; back online they reach the server,
// which refuses none of them, and the photo's bytes reach the branch. Online, an R18
// warranty-part request (refused in words with no reason) and an R28 travel expense claim
// with its receipt photo; the desk approves both through the API, and the app shows each
// decision in words. On an installation job (--install-job), `request completion` lists the
// R16 training in words until the training is recorded. Then the customer's signature
// (R8, R9): `request completion` lists what is still missing in words (the solution, the
// customer's opinion); once recorded, the service report is shown for the customer to read
// (in Chinese, then in English at the customer's choice), the customer signs on the pad with
// a finger (touch events, two strokes), gives a name and answers the survey, offline; the
// device signs the acknowledgement and keeps it with the signature image until it is online.
// Meanwhile the desk moves the appointment (R3, through the API with --desk-token), which the
// customer acknowledged: back online the app uploads the image and asks for completion, the
// branch refuses the report (the job changed after the customer signed), and the app shows
// the refusal with its reason in words; asked again, the app has the customer sign the job as
// it is now, and the app shows the branch's answer: the report signed, with its id (printed
// in the summary for the Rust side to fetch and verify). Screenshots go to --screenshots. Prints one JSON line with
// the steps and timings; exits 1 with the failing step on stderr.

import { PHONE, commandLine, openBrowser, expect } from "./browser.mjs";

const args = commandLine("app.mjs", {
  code: { type: "string" },
  job: { type: "string" },
  customer: { type: "string" },
  "fault-cause": { type: "string" },
  "check-out-note": { type: "string" },
  solution: { type: "string" },
  opinion: { type: "string" },
  signer: { type: "string" },
  "desk-token": { type: "string" },
  "install-job": { type: "string" },
}, ["code", "job", "customer", "fault-cause", "check-out-note", "solution", "opinion", "signer", "desk-token", "install-job"]);

const STAGES_ZH = {
  new: "新建", assigned: "已预约", on_site: "在现场", completed: "待签发",
  signed: "已签发", refused: "被退回", cancelled: "已取消",
};
const STAGES_EN = {
  new: "New", assigned: "Appointment agreed", on_site: "On site",
  completed: "Completed, awaiting report", signed: "Report signed", refused: "Report refused",
  cancelled: "Cancelled",
};

/** The rest of the visit as the technician records it (tests/it/pwa_browser.rs checks the
 *  same values in the server's job and in the signed report). */
const VISIT = {
  appointment: "2026-11-03T09:30",
  faultRechecked: "压缩机频繁跳闸，客户确认",
  safety: "车间动火须办证；进入前已签安全协议",
  part: { name: "温控器", number: "TC-220", spec: "220V 10A", quantity: 2, price: "85.00", warranty: false },
  removed: { name: "密封圈", number: "SR-8", spec: "φ8", quantity: 1, price: "3.50", warranty: true },
  labour: { minutes: 90, rate: "120.00" },
  travel: { km: "12.5", cost: "30.00" },
  approval: { reason: "温控器在保修期内损坏，申请索赔", amount: "85.00" },
  expense: { date: "2026-11-03", from: "北区网点", to: "华东机械厂", category: "出租车", amount: "46.00", reason: "携带零件打车前往现场" },
  deskNote: "同意",
  training: { trainees: ["设备科 王工", "操作员 李师傅"], topics: "开机、停机与日常保养" },
};
/** A 1×1 PNG, the photo the test "takes". */
const PHOTO = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
  "base64",
);
/** The receipt's "photo": other bytes than the photo's, so another attachment. */
const RECEIPT = Buffer.concat([PHOTO, Buffer.from("receipt")]);

const started = Date.now();
const steps = [];
const timings = {};
let step = "launch";
const browser = await openBrowser(args, PHONE);

const consoleLines = [];
try {
  const { page, context, base } = browser;
  page.on("console", m => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", e => consoleLines.push(`pageerror: ${e.message}`));
  const job = `li.job[data-job="${args.job}"]`;

  /** The customer's two strokes with a finger on the pad, the name and the survey (the
   *  screenshot `sign.png` once, with `shoot`). */
  async function signOnThePad(shoot) {
    const pad = page.locator("#signature-pad");
    await pad.scrollIntoViewIfNeeded();
    const box = await pad.boundingBox();
    // Through the browser's touch input (CDP): each event 40 ms after the one before (by the
    // events' own timestamps), and a stroke rests before it lifts, as a hand does; lifted at
    // speed, Chromium would take it for a fling, and the next tap would only stop the fling.
    const cdp = await context.newCDPSession(page);
    let clock = Date.now() / 1000;
    const touch = (type, x, y) => {
      clock += 0.04;
      return cdp.send("Input.dispatchTouchEvent", {
        type,
        timestamp: clock,
        touchPoints: type === "touchEnd" ? [] : [{ x: box.x + x, y: box.y + y }],
      });
    };
    for (const stroke of [
      [[30, 120], [60, 60], [90, 110], [120, 50], [150, 115]],
      [[180, 60], [220, 90], [260, 70], [300, 100]],
    ]) {
      await touch("touchStart", ...stroke[0]);
      for (const point of stroke.slice(1)) await touch("touchMove", ...point);
      clock += 0.5;
      await touch("touchEnd");
    }
    await cdp.detach();
    await page.fill("#signer-name", args.signer);
    expect((await page.locator(".sign-problem").count()) === 0, "the problems stay after signing and naming");
    for (const [question, score] of [["attitude", "5"], ["skill", "4"], ["punctuality", "5"], ["service_items", "none"]]) {
      await page.tap(`#survey-${question} [data-score="${score}"]`);
      await page.waitForSelector(`#survey-${question} [data-score="${score}"][aria-pressed="true"]`);
    }
    await page.fill("#suggestions", "下次请提前打电话");
    if (shoot) {
      await page.locator("#sign-form").evaluate(form => form.scrollIntoView({ block: "start" }));
      await page.screenshot({ path: browser.shot("sign.png") });
    }
  }

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

  step = "offline, the appointment call and the safety briefing (R3, R32)";
  await page.tap(job);
  await page.waitForSelector("#job");
  // Recording with no time is refused in words, before anything is written.
  await page.tap("#step-appointment button[type=submit]");
  await page.waitForSelector("#step-appointment .step-problem");
  await page.fill("#appointment-at", VISIT.appointment);
  await page.fill("#fault-rechecked", VISIT.faultRechecked);
  await page.tap("#step-appointment button[type=submit]");
  await page.waitForSelector("#appointment-agreed");
  await page.waitForSelector(`#job[data-stage="assigned"]`);
  await page.fill("#safety-notes", VISIT.safety);
  await page.tap("#step-safety button[type=submit]");
  await page.waitForSelector("#safety-recorded");
  await page.locator("#step-appointment").scrollIntoViewIfNeeded();
  await page.screenshot({ path: browser.shot("appointment-safety.png") });
  steps.push(step);

  step = "offline, the visit: arrival, fault cause, check-out";
  await page.tap("#arrive");
  await page.waitForSelector("#arrived");
  await page.waitForSelector(`#job[data-stage="on_site"]`);
  await page.tap("#fault-cause");
  await page.fill("#fault-cause", args["fault-cause"]);
  await page.tap("#step-diagnosis button[type=submit]");

  // Parts (R7, R10, R18): two lines, one removed again while unsigned; labour and travel.
  // The first is picked from the job's price list, which fills it with the desk's price; the
  // second is not on the list and is typed in.
  for (const part of [VISIT.part, VISIT.removed]) {
    if (part === VISIT.part) {
      await page.selectOption("#price-item", part.number);
      const filled = await page.evaluate(() => ["#part-name", "#part-number", "#part-spec", "#part-price"]
        .map(s => [document.querySelector(s).value, document.querySelector(s).readOnly]));
      expect(JSON.stringify(filled) === JSON.stringify([[part.name, true], [part.number, true], [part.spec, true], [part.price, true]]),
        `the price list filled the line with ${JSON.stringify(filled)}`);
    } else {
      await page.fill("#part-name", part.name);
      await page.fill("#part-number", part.number);
      await page.fill("#part-spec", part.spec);
      await page.fill("#part-price", part.price);
    }
    await page.fill("#part-qty", String(part.quantity));
    await page.selectOption("#part-warranty", part.warranty ? "warranty" : "billable");
    await page.tap("#part-form button[type=submit]");
    await page.waitForSelector(`#parts li.part:has-text("${part.name}")`);
    expect(await page.inputValue("#part-name") === "", "the part form is emptied once the line is added");
  }
  expect((await page.locator("#parts li.part").count()) === 2, "two part lines");
  await page.locator(`#parts li.part:has-text("${VISIT.removed.name}") .remove-part`).tap();
  await page.waitForFunction(name => ![...document.querySelectorAll("#parts li.part")].some(li => li.textContent.includes(name)), VISIT.removed.name);
  expect((await page.locator("#parts li.part").count()) === 1, "one part line after the removal");
  await page.fill("#labour-minutes", String(VISIT.labour.minutes));
  await page.fill("#labour-rate", VISIT.labour.rate);
  await page.fill("#travel-km", VISIT.travel.km);
  await page.fill("#travel-cost", VISIT.travel.cost);
  await page.tap("#step-charges button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#labour-minutes")?.defaultValue === "90");
  await page.locator("#step-parts").scrollIntoViewIfNeeded();
  await page.screenshot({ path: browser.shot("parts.png") });

  // A photo taken offline: kept on the device, listed as waiting for the upload.
  await page.selectOption("#photo-kind", "before");
  await page.setInputFiles("#step-photos input[type=file]", { name: "before.png", mimeType: "image/png", buffer: PHOTO });
  await page.waitForSelector(`#photos li.photo[data-kind="before"][data-upload="pending"]`);
  const photoText = (await page.textContent("#photos")) ?? "";
  expect(photoText.includes("before.png") && photoText.includes("联网后上传"), `the photo offline: ${photoText}`);
  await page.locator("#step-photos").scrollIntoViewIfNeeded();
  await page.screenshot({ path: browser.shot("photo-offline.png") });

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
  // The photo's bytes reach the branch over HTTP once online (as the signature image does).
  await page.waitForSelector(`#photos li.photo[data-kind="before"][data-upload="uploaded"]`);
  expect((await page.locator(".server-error").count()) === 0,
    `the server refused a change: ${await page.locator(".server-error").allTextContents()}`);
  await page.screenshot({ path: browser.shot("job.png"), fullPage: true });
  steps.push(step);

  step = "approvals: an R18 request and an R28 claim with its receipt; the desk's decisions come back in words";
  await page.selectOption("#approval-kind", "warranty_part");
  await page.tap("#approval-form button[type=submit]");
  await page.waitForSelector("#step-approvals .step-problem");
  await page.fill("#approval-reason", VISIT.approval.reason);
  await page.fill("#approval-amount", VISIT.approval.amount);
  await page.tap("#approval-form button[type=submit]");
  await page.waitForSelector(`#approvals li.approval[data-kind="warranty_part"][data-state="waiting"]`);
  await page.fill("#expense-date", VISIT.expense.date);
  await page.fill("#expense-from", VISIT.expense.from);
  await page.fill("#expense-to", VISIT.expense.to);
  await page.fill("#expense-category", VISIT.expense.category);
  await page.fill("#expense-amount", VISIT.expense.amount);
  await page.fill("#expense-reason", VISIT.expense.reason);
  await page.setInputFiles("#expense-form input[type=file]", { name: "receipt.png", mimeType: "image/png", buffer: RECEIPT });
  await page.waitForSelector("#receipt-chosen");
  await page.tap("#expense-form button[type=submit]");
  await page.waitForSelector(`#expenses li.approval[data-kind="travel_expense"][data-state="waiting"]`);
  await page.waitForSelector(`#expenses li.approval [data-receipt-upload="uploaded"]`);
  await page.waitForSelector(`#job[data-sync="synced"]`);
  const requests = await page.$$eval("li.approval", items => items.map(li => ({ id: li.dataset.approval, kind: li.dataset.kind })));
  expect(requests.length === 2, `the requests: ${JSON.stringify(requests)}`);
  for (const r of requests) {
    const decided = await fetch(`${base}/api/jobs/${args.job}/approvals/${r.id}/decision`, {
      method: "POST",
      headers: { authorization: `Bearer ${args["desk-token"]}`, "content-type": "application/json" },
      body: JSON.stringify({ approved: true, note: VISIT.deskNote }),
    });
    expect(decided.ok, `the desk's decision on ${r.kind}: ${decided.status} ${await decided.text()}`);
  }
  for (const kind of ["warranty_part", "travel_expense"]) {
    await page.waitForSelector(`li.approval[data-kind="${kind}"][data-state="approved"]`);
    const said = (await page.textContent(`li.approval[data-kind="${kind}"]`)) ?? "";
    expect(said.includes("批准") && said.includes(VISIT.deskNote), `the decision in words: ${said}`);
  }
  expect((await page.locator(".server-error").count()) === 0,
    `the server refused a change: ${await page.locator(".server-error").allTextContents()}`);
  await page.locator("#step-approvals").scrollIntoViewIfNeeded();
  await page.screenshot({ path: browser.shot("approvals.png") });
  await page.tap("#back");
  await page.waitForSelector(`${job}[data-sync="synced"][data-stage="on_site"]`);
  steps.push(step);

  step = "an installation job: the R16 training is missing in words until it is recorded";
  const install = `li.job[data-job="${args["install-job"]}"]`;
  await page.tap(install);
  await page.waitForSelector(`#job[data-job="${args["install-job"]}"]`);
  await page.tap("#request-completion");
  await page.waitForSelector("#missing");
  const before = await page.$$eval("#missing li", items => items.map(li => ({ code: li.dataset.code, text: li.textContent })));
  expect(before.some(m => m.code === "missing_training" && m.text.includes("R16") && m.text.includes("记录对客户人员的培训")),
    `an installation's missing items: ${JSON.stringify(before)}`);
  await page.tap("#step-training button[type=submit]");
  await page.waitForSelector("#step-training .step-problem");
  await page.fill("#trainees", VISIT.training.trainees.join("\n"));
  await page.fill("#training-topics", VISIT.training.topics);
  await page.tap("#step-training button[type=submit]");
  await page.waitForSelector("#training-recorded");
  const after = await page.$$eval("#missing li", items => items.map(li => li.dataset.code));
  expect(!after.some(c => c.startsWith("missing_train")) && after.includes("missing_check_out"),
    `missing once trained: ${JSON.stringify(after)}`);
  await page.waitForSelector(`#job[data-sync="synced"]`);
  await page.locator("#step-training").scrollIntoViewIfNeeded();
  await page.screenshot({ path: browser.shot("training.png") });
  await page.tap("#back");
  await page.waitForSelector(`${install}[data-sync="synced"]`);
  steps.push(step);

  step = "request completion lists every missing item, in words";
  await page.tap(job);
  await page.waitForSelector("#job");
  await page.tap("#request-completion");
  await page.waitForSelector("#missing");
  const missing = await page.$$eval("#missing li", items => items.map(li => ({ code: li.dataset.code, text: li.textContent })));
  const codes = missing.map(m => m.code).sort();
  expect(JSON.stringify(codes) === JSON.stringify(["missing_customer_opinion", "missing_solution"]),
    `missing before signing: ${JSON.stringify(missing)}`);
  expect(missing.some(m => m.text.includes("记录处理方法")) && missing.some(m => m.text.includes("记录客户意见")),
    `the missing items in words: ${JSON.stringify(missing)}`);
  expect((await page.locator("#report").count()) === 0, "the report was shown with items missing");
  await page.locator("#step-completion").scrollIntoViewIfNeeded();
  await page.screenshot({ path: browser.shot("completion-missing.png") });
  steps.push(step);

  step = "once recorded, the report is shown in the customer's language";
  await page.fill("#solution", args.solution);
  await page.tap("#step-diagnosis button[type=submit]");
  await page.fill("#customer-opinion", args.opinion);
  await page.tap("#step-opinion button[type=submit]");
  await page.waitForFunction(() => document.querySelectorAll("#missing li").length === 0);
  await page.tap("#request-completion");
  await page.waitForSelector("#report[data-lang=zh]");
  const zh = (await page.textContent("#report")) ?? "";
  for (const said of ["售后服务报告单", args.customer, args["fault-cause"], args.solution, args.opinion, args["check-out-note"]]) {
    expect(zh.includes(said), `the report in Chinese lacks ${JSON.stringify(said)}: ${zh}`);
  }
  await page.tap("#report-lang-en");
  await page.waitForSelector("#report[data-lang=en]");
  const en = (await page.textContent("#report")) ?? "";
  expect(en.includes("After-sales service report") && en.includes("Customer pays") && en.includes(args.solution),
    `the report in English: ${en}`);
  // The app's own words stay in the technician's language.
  const signHeading = (await page.textContent("h2")) ?? "";
  expect(signHeading.includes("请客户阅读服务报告后签字"), `the signing heading ${JSON.stringify(signHeading)}`);
  await page.screenshot({ path: browser.shot("sign-report-en.png") });
  steps.push(step);

  step = "the customer signs with a finger, names themself and answers the survey";
  // Signing with no mark and no name is refused, in words.
  await page.tap("#sign");
  await page.waitForSelector(".sign-problem");
  const problems = await page.locator(".sign-problem").allTextContents();
  expect(problems.length === 2, `the empty signature's problems: ${JSON.stringify(problems)}`);
  await signOnThePad(true);
  await context.setOffline(true);
  await page.waitForSelector(`#net[data-state="offline"]`);
  steps.push(step);

  step = "offline, the device signs and keeps the signature until it is online";
  await page.tap("#sign");
  await page.waitForSelector("#acknowledged");
  const acknowledged = (await page.textContent("#acknowledged")) ?? "";
  expect(acknowledged.includes(args.signer), `the acknowledgement line ${JSON.stringify(acknowledged)}`);
  await page.waitForSelector(`#outcome[data-outcome="waiting_upload"]`);
  await page.locator("#step-completion").scrollIntoViewIfNeeded();
  await page.screenshot({ path: browser.shot("signed-offline.png") });
  steps.push(step);

  step = "the desk moves the appointment: the branch refuses the report, and the app says why";
  const moved = await fetch(`${base}/api/jobs/${args.job}/appointment`, {
    method: "PUT",
    headers: { authorization: `Bearer ${args["desk-token"]}`, "content-type": "application/json" },
    body: JSON.stringify({ at: "2026-11-03T10:00:00Z", contacted_by: "desk-li", fault_rechecked: "压缩机跳闸" }),
  });
  expect(moved.ok, `the desk's appointment: ${moved.status} ${await moved.text()}`);
  await context.setOffline(false);
  await page.waitForSelector(`#outcome[data-outcome="refused"]`);
  const reasons = await page.$$eval("#refusal-reasons li", items => items.map(li => ({ code: li.dataset.code, text: li.textContent })));
  expect(reasons.some(r => r.code === "acknowledgement_mismatch" && r.text.includes("客户签字后工单又被修改")),
    `the refusal's reasons: ${JSON.stringify(reasons)}`);
  await page.waitForSelector(`#job[data-stage="refused"]`);
  await page.locator("#step-completion").scrollIntoViewIfNeeded();
  await page.screenshot({ path: browser.shot("refused.png") });
  steps.push(step);

  step = "asked again, the customer signs the job as it is now; the branch signs the report";
  await page.tap("#request-completion");
  await page.waitForSelector("#report[data-lang=zh]");
  const again = (await page.textContent("#report")) ?? "";
  expect(again.includes("2026"), `the report to sign again: ${again}`);
  await signOnThePad(false);
  await page.tap("#sign");
  await page.waitForSelector(`#outcome[data-outcome="signed"]`);
  const reportId = await page.getAttribute("#outcome", "data-report");
  expect(/^[0-9a-f]{32}$/.test(reportId ?? ""), `report id ${reportId}`);
  const outcome = (await page.textContent("#outcome")) ?? "";
  expect(outcome.includes("网点已签发报告") && outcome.includes(reportId), `the outcome in words: ${outcome}`);
  await page.waitForSelector(`#job[data-stage="signed"]`);
  expect((await page.locator(".server-error").count()) === 0,
    `the server refused a change: ${await page.locator(".server-error").allTextContents()}`);
  await page.locator("#step-completion").scrollIntoViewIfNeeded();
  await page.screenshot({ path: browser.shot("signed.png") });
  steps.push(step);

  console.log(JSON.stringify({ ok: true, steps, timings, report_id: reportId, ms: Date.now() - started }));
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
