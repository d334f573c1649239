// What the browser scenarios share: Debian's Chromium started by
// playwright-core (no browser download), axe-core on each page, and the
// weight of each page's first load (HTML and CSS, as transferred).
import { chromium } from 'playwright-core';
import { AxeBuilder } from '@axe-core/playwright';

export const BASE = process.env.GUICHET_URL || 'http://127.0.0.1:8080';

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

/// axe-core's WCAG 2.1 A and AA rules (and best practice) on the page as it
/// stands; the violations, each with the page it was found on.
export async function audit(page, label, found) {
  const result = await new AxeBuilder({ page })
    .withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'])
    .analyze();
  for (const v of result.violations) {
    found.push({
      page: label,
      url: page.url(),
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5),
    });
  }
  return result.violations.length;
}

/// Loads `path` in a fresh context (nothing cached) and sums what the
/// document and its stylesheets weighed on the wire and once decoded.
export async function weigh(browser, path, label) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const responses = [];
  page.on('response', (r) => responses.push(r));
  await page.goto(BASE + path, { waitUntil: 'load' });
  let html = { wire: 0, decoded: 0 };
  let css = { wire: 0, decoded: 0 };
  for (const r of responses) {
    const type = r.request().resourceType();
    if (type !== 'document' && type !== 'stylesheet') continue;
    const sizes = await r.request().sizes();
    const body = await r.body();
    const into = type === 'document' ? html : css;
    into.wire += sizes.responseBodySize + sizes.responseHeadersSize;
    into.decoded += body.length;
  }
  await context.close();
  return { label, path, html, css, wire_total: html.wire + css.wire };
}

export function check(condition, what) {
  if (!condition) throw new Error(what);
}
