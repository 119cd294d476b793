/**
 * Debian's Chromium (`apt-get install chromium`), headless, driven by playwright-core:
 * the one browser the dashboard's tests and benchmark use. The flags keep it from
 * reaching for the network (these machines have none) and from needing a sandbox as root.
 *
 * @module
 */
import { type Browser, chromium } from "playwright-core";

/** Where Debian installs Chromium. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/** Launches headless Chromium with a fresh profile. */
export async function launchChromium(): Promise<Browser> {
  return await chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}
