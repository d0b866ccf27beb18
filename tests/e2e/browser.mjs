// What the browser scripts share: their command line (--base, --screenshots, --chromium and
// the script's own options), Debian's chromium launched headless in a fresh profile that
// `close` removes, and `expect`. By default JavaScript is disabled in the page (the console
// serves none) on a tablet held sideways; `overrides` changes the context's options
// (`PHONE`: the technician's app, a phone with touch and JavaScript on).

import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

/// The script's options with the shared ones; exits 2 naming a missing required option.
export function commandLine(script, options, required) {
  const { values } = parseArgs({
    options: {
      base: { type: "string" },
      screenshots: { type: "string" },
      chromium: { type: "string", default: process.env.FIELDSYNC_CHROMIUM || "/usr/bin/chromium" },
      ...options,
    },
  });
  for (const name of ["base", "screenshots", ...required]) {
    if (!values[name]) {
      console.error(`${script}: --${name} is required`);
      process.exit(2);
    }
  }
  return values;
}

/// Chromium with a page open; `close()` ends it and removes its profile.
export async function openBrowser(args, overrides = {}) {
  const userDataDir = mkdtempSync(join(tmpdir(), "fieldsync-chromium-"));
  mkdirSync(args.screenshots, { recursive: true });
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: args.chromium,
    headless: true,
    javaScriptEnabled: false,
    // A tablet held sideways.
    viewport: { width: 1024, height: 768 },
    locale: "zh-CN",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
    ],
    ...overrides,
  });
  // Generous: a loaded machine can make chromium many times slower.
  context.setDefaultTimeout(120_000);
  context.setDefaultNavigationTimeout(120_000);
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    base: args.base.replace(/\/$/, ""),
    shot: (name) => join(args.screenshots, name),
    close: async () => {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/// The technician's app's context: a phone (390×844, touch, JavaScript on) whose service
/// worker may run; `openBrowser(args, PHONE)`.
export const PHONE = {
  javaScriptEnabled: true,
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
  locale: "zh-CN",
  serviceWorkers: "allow",
};

export function expect(condition, what) {
  if (!condition) throw new Error(what);
}
