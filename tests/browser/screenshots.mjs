// Screenshots of every page, on a desktop and on a 360 px wide phone, in
// French and English, from a running Guichet (scripts/screenshots.sh), and
// the weight of each page's first load. Files a dossier on the way, so the
// filing steps, the receipt and "my file" are shown filled.
//
// Writes docs/screenshots/*.png and docs/screenshots/weights.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BASE, launch, weigh } from './lib.mjs';

const OUT = join(dirname(fileURLToPath(import.meta.url)), '../../docs/screenshots');
mkdirSync(OUT, { recursive: true });
const SIZES = { desktop: { width: 1280, height: 800 }, phone: { width: 360, height: 740 } };

async function shoot(page, name) {
  for (const [size, viewport] of Object.entries(SIZES)) {
    await page.setViewportSize(viewport);
    await page.screenshot({ path: join(OUT, `${name}-${size}.png`), fullPage: true });
  }
  await page.setViewportSize(SIZES.desktop);
}

const browser = await launch();
const shots = [];
try {
  for (const lang of ['fr', 'en']) {
    const p = lang === 'en' ? '/en' : '';
    const context = await browser.newContext({ viewport: SIZES.desktop });
    const page = await context.newPage();
    const visit = async (label, path) => {
      await page.goto(BASE + path);
      await shoot(page, `${lang}-${label}`);
      shots.push({ lang, label, path });
    };
    await visit('home', lang === 'en' ? '/en/' : '/');
    await visit('file-start', `${p}/deposer`);
    await page.click('form[action$="/deposer"] button');
    await page.click('label[for="procedure-renewal"]');
    await page.selectOption('#motif', 'employee');
    await shoot(page, `${lang}-step-1-procedure`);
    await page.click('button[type=submit]');
    await page.click('button[type=submit]'); // sent empty: the errors shown
    await shoot(page, `${lang}-step-2-identity-errors`);
    await page.fill('#applicant-family_name', 'Benali');
    await page.fill('#applicant-given_names', 'Amina');
    await page.fill('#applicant-birth_date', '02/03/1991');
    await page.fill('#applicant-nationality', 'DZA');
    await page.click('button[type=submit]');
    await page.fill('#contact-email', 'amina.benali@example.org');
    await page.fill('#contact-address-line1', '12 rue Nationale');
    await page.fill('#contact-address-postal_code', '59000');
    await page.fill('#contact-address-city', 'Lille');
    await page.click('label[for="answer-email"]');
    await shoot(page, `${lang}-step-3-contact`);
    await page.click('button[type=submit]');
    await page.selectOption('#current_title-kind', 'temporary_card');
    await page.fill('#current_title-number', '5912345678');
    await page.fill('#current_title-expires_on', '31/01/2027');
    await shoot(page, `${lang}-step-4-title`);
    await page.click('button[type=submit]');
    await shoot(page, `${lang}-step-5-documents`);
    await page.click('a.fr-btn[href$="/etape/recapitulatif"]');
    await shoot(page, `${lang}-step-6-summary`);
    await page.click('form[action$="/envoi"] button');
    await shoot(page, `${lang}-receipt`);
    const reference = (await page.textContent('strong.guichet-code')).trim();
    await visit('my-file', `${p}/mon-dossier`);
    await page.fill('#reference', reference);
    await page.fill('#birth_date', '02/03/1991');
    await page.click('form[action$="/mon-dossier"] button');
    await shoot(page, `${lang}-my-file-status`);
    await visit('appointments', `${p}/rendez-vous?departement=59`);
    await visit('blocked', `${p}/bloque`);
    await visit('check', `${p}/verifier`);
    await context.close();
  }
  const weights = [];
  for (const { lang, label, path } of shots) weights.push({ lang, ...(await weigh(browser, path, label)) });
  writeFileSync(join(OUT, 'weights.json'), JSON.stringify(weights, null, 2) + '\n');
  for (const w of weights) {
    process.stdout.write(`${w.lang} ${w.label.padEnd(14)} HTML ${w.html.wire} B (${w.html.decoded} decoded), CSS ${w.css.wire} B (${w.css.decoded} decoded), total ${w.wire_total} B\n`);
  }
} finally {
  await browser.close();
}
