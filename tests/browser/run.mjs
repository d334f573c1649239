// The persons' pages in a real Chromium, as tests/integration/web_pages.rs
// drives them against a running Guichet:
// - every page in French and English through axe-core (WCAG 2.1 AA);
// - the whole filing path with the mouse, in French then in English: the
//   steps, a step refused and corrected, the documents uploaded, the
//   summary, the receipt and its PDF;
// - the same path with the keyboard alone;
// - my file, a report when blocked, an attestation check, a booking.
// Prints one JSON object: what was filed, the violations, the weights.
//
// Environment: GUICHET_URL, CHROMIUM, GUICHET_FILES (a folder holding
// passport.pdf and photo.png), GUICHET_SITE (a desk of département 59).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BASE, launch, audit, weigh, check } from './lib.mjs';

const FILES = process.env.GUICHET_FILES;
const SITE = process.env.GUICHET_SITE;
const violations = [];
const BOOKED_DAY = { value: '' };
const filed = [];
const steps = [];

function say(what) {
  steps.push(what);
  process.stderr.write(`browser: ${what}\n`);
}

async function expectStatus(response, status, what) {
  check(response && response.status() === status, `${what}: HTTP ${response && response.status()}, not ${status}`);
}

const PAGES = [
  ['home', '/'],
  ['file-start', '/deposer'],
  ['my-file', '/mon-dossier'],
  ['appointments', '/rendez-vous'],
  ['appointments-59', '/rendez-vous?departement=59'],
  ['blocked', '/bloque'],
  ['check', '/verifier'],
  ['open-data', '/donnees'],
];

/// 1991-03-02 as a person types it: 02/03/1991.
function typed(iso) {
  const [y, m, d] = iso.split('-');
  return `${d}/${m}/${y}`;
}

function prefix(lang) {
  return lang === 'en' ? '/en' : '';
}

function href(lang, path) {
  return lang === 'en' && path === '/' ? '/en/' : prefix(lang) + path;
}

/// The filing path with the mouse: fills each step, one refused and fixed.
async function fileWithMouse(page, lang, person) {
  const p = prefix(lang);
  await expectStatus(await page.goto(BASE + href(lang, '/')), 200, 'home');
  await page.click(`a[href="${p}/deposer"].fr-btn`);
  await audit(page, `${lang} filing start`, violations);
  await page.click('form[action$="/deposer"] button[type=submit]');
  check(page.url().includes('/etape/demarche'), `a draft's first step, not ${page.url()}`);
  await audit(page, `${lang} step procedure`, violations);
  // Sent empty: refused next to the fields, with the summary at the top.
  await page.click('button[type=submit]');
  check((await page.locator('.fr-alert--error').count()) === 1, 'an error summary');
  check((await page.locator('#motif-error').count()) === 1, 'the motif named');
  await audit(page, `${lang} step procedure refused`, violations);
  await page.click('label[for="procedure-renewal"]');
  await page.selectOption('#motif', 'employee');
  await page.click('button[type=submit]');
  check(page.url().includes('/etape/identite'), `identity step, not ${page.url()}`);
  await audit(page, `${lang} step identity`, violations);
  await page.fill('#applicant-family_name', person.family);
  await page.fill('#applicant-given_names', person.given);
  await page.fill('#applicant-birth_date', typed(person.born));
  await page.fill('#applicant-nationality', 'dza');
  await page.click('button[type=submit]');
  check(page.url().includes('/etape/contact'), `contact step, not ${page.url()}`);
  await audit(page, `${lang} step contact`, violations);
  await page.fill('#contact-email', person.email);
  await page.fill('#contact-phone', '06 12 34 56 78');
  await page.fill('#contact-address-line1', '12 rue Nationale');
  await page.fill('#contact-address-postal_code', '59000');
  await page.fill('#contact-address-city', 'Lille');
  await page.click('label[for="answer-email"]');
  await page.click('button[type=submit]');
  check(page.url().includes('/etape/titre'), `title step, not ${page.url()}`);
  await audit(page, `${lang} step title`, violations);
  // A renewal needs the current title: refused until given.
  await page.click('button[type=submit]');
  check((await page.locator('#current_title-kind-error').count()) === 1, 'the title asked for');
  await audit(page, `${lang} step title refused`, violations);
  await page.selectOption('#current_title-kind', 'temporary_card');
  await page.fill('#current_title-number', '5912345678');
  await page.fill('#current_title-expires_on', typed(person.expires));
  await page.click('button[type=submit]');
  check(page.url().includes('/etape/documents'), `documents step, not ${page.url()}`);
  await audit(page, `${lang} step documents`, violations);
  check((await page.locator('input[type=file]').count()) === 5, 'five documents asked for a renewal as an employee');
  await page.setInputFiles('#file-passport', join(FILES, 'passport.pdf'));
  await page.setInputFiles('#file-photo', join(FILES, 'photo.png'));
  await page.click('form[enctype="multipart/form-data"] button[type=submit]');
  check(page.url().includes('/etape/documents'), `back on documents, not ${page.url()}`);
  check((await page.locator('.fr-badge--warning').count()) === 1, 'documents still missing, said');
  // A file that is no document is refused next to its input.
  await page.setInputFiles('#file-proof_of_address', {
    name: 'invoice.pdf', mimeType: 'application/pdf', buffer: Buffer.from('MZ\x90\x00 not a pdf'),
  });
  await page.click('form[enctype="multipart/form-data"] button[type=submit]');
  check((await page.locator('#file-proof_of_address-error').count()) === 1, 'the refused file named');
  await audit(page, `${lang} step documents refused`, violations);
  await page.click(`a[href$="/etape/recapitulatif"].fr-btn`);
  await audit(page, `${lang} step summary`, violations);
  check((await page.getAttribute('html', 'lang')) === lang, `the summary in ${lang}`);
  const summary = await page.textContent('main');
  check(summary.includes(person.family), 'the summary shows the name');
  await page.click('form[action$="/envoi"] button[type=submit]');
  check(page.url().endsWith('/recepisse'), `the receipt, not ${page.url()}`);
  await audit(page, `${lang} receipt`, violations);
  const reference = (await page.textContent('strong.guichet-code')).trim();
  check(/^G-/.test(reference) || reference.length > 6, `a reference, not ${reference}`);
  // The receipt's PDF: made once instruction recorded the dossier.
  const pdfUrl = page.url() + '/pdf';
  let pdf = null;
  for (let i = 0; i < 240 && !pdf; i++) {
    const r = await page.request.get(pdfUrl);
    if (r.status() === 200) pdf = await r.body();
    else await new Promise((ok) => setTimeout(ok, 500));
  }
  check(pdf && pdf.subarray(0, 5).toString() === '%PDF-', 'the receipt PDF');
  const download = page.waitForEvent('download');
  await page.click(`a[href$="/recepisse/pdf"]`);
  const saved = await download;
  check((await saved.path()) !== null, 'the receipt downloaded from its link');
  return { lang, reference, pdf_bytes: pdf.length, draft: page.url() };
}

/// The same path with the keyboard alone: Tab, typing, Space, Enter and
/// arrows; the file inputs open a file chooser, answered as a person would.
async function fileWithKeyboard(page, person) {
  const kb = page.keyboard;
  const tabTo = async (selector, max = 60) => {
    for (let i = 0; i < max; i++) {
      await kb.press('Tab');
      if (await page.evaluate((s) => document.activeElement && document.activeElement.matches(s), selector)) return;
    }
    throw new Error(`keyboard: never reached ${selector}`);
  };
  // Enter on a link or a button, and the page it leads to, loaded.
  const enterTo = async (pattern) => {
    await Promise.all([page.waitForNavigation(), kb.press('Enter')]);
    const errors = await page.locator('.fr-error-text').allTextContents();
    check(errors.length === 0, `keyboard: refused on ${page.url()}: ${errors}`);
    check(page.url().includes(pattern), `keyboard: on ${page.url()}, not ${pattern}`);
  };
  const typeIn = async (selector, text) => { await tabTo(selector); await kb.type(text); };
  // Space on the focused file input opens the chooser. A listener set before
  // the first page keeps interception on for the whole run (adding one just
  // before the key races with the browser turning it on), and a key that a
  // page still being painted dropped is pressed again rather than waited on
  // for the whole timeout.
  page.on('filechooser', () => {});
  const chooserBySpace = async () => {
    for (let attempt = 1; attempt <= 3; attempt++) {
      const chooser = page.waitForEvent('filechooser', { timeout: 5000 }).catch(() => null);
      await kb.press('Space');
      const opened = await chooser;
      if (opened) return opened;
      say(`keyboard: no file chooser after Space (attempt ${attempt})`);
    }
    throw new Error('keyboard: Space on the file input never opened a file chooser');
  };
  await page.goto(BASE + '/');
  await tabTo('a.fr-btn[href="/deposer"]');
  await enterTo('/deposer');
  await tabTo('form[action="/deposer"] button');
  await enterTo('/etape/demarche');
  await tabTo('input[name=procedure]');
  // Arrows move within a radio group: first_application, renewal, ...
  await kb.press('ArrowDown');
  check(await page.isChecked('#procedure-renewal'), 'renewal chosen with the arrows');
  await tabTo('#motif');
  await kb.type('Sal');
  await tabTo('button[type=submit]');
  await enterTo('/etape/identite');
  await typeIn('#applicant-family_name', person.family);
  await typeIn('#applicant-given_names', person.given);
  await tabTo('#applicant-birth_date');
  await kb.type(typed(person.born));
  await typeIn('#applicant-nationality', 'MAR');
  await tabTo('button[type=submit]');
  await enterTo('/etape/contact');
  await typeIn('#contact-email', person.email);
  await typeIn('#contact-address-line1', '3 place du Théâtre');
  await typeIn('#contact-address-postal_code', '59800');
  await typeIn('#contact-address-city', 'Lille');
  await tabTo('input[name="contact.answer_channel"]');
  await kb.press('ArrowDown'); // online_account → email
  check(await page.isChecked('#answer-email'), 'e-mail chosen with the arrows');
  await tabTo('button[type=submit]');
  await enterTo('/etape/titre');
  await tabTo('#current_title-kind');
  // Arrows on a closed list: no title, long-stay visa, temporary card.
  await kb.press('ArrowDown');
  await kb.press('ArrowDown');
  check((await page.inputValue('#current_title-kind')) === 'temporary_card', 'the title chosen with the arrows');
  await typeIn('#current_title-number', '5900000001');
  await tabTo('#current_title-expires_on');
  await kb.type(typed(person.expires));
  await tabTo('button[type=submit]');
  await enterTo('/etape/documents');
  await tabTo('#file-passport');
  await (await chooserBySpace()).setFiles(join(FILES, 'passport.pdf'));
  await tabTo('form[enctype="multipart/form-data"] button[type=submit]');
  await enterTo('/etape/documents');
  check((await page.locator('.fr-hint-text', { hasText: 'passport.pdf' }).count()) === 1, 'the passport received');
  await tabTo('a.fr-btn[href$="/etape/recapitulatif"]');
  await enterTo('/etape/recapitulatif');
  await tabTo('form[action$="/envoi"] button');
  await enterTo('/recepisse');
  const reference = (await page.textContent('strong.guichet-code')).trim();
  return { lang: 'fr', keyboard: true, reference };
}

async function otherPages(page, lang, reference, born) {
  const p = prefix(lang);
  // My file: the status by reference and birth date.
  await page.goto(BASE + p + '/mon-dossier');
  await page.fill('#reference', reference);
  await page.fill('#birth_date', typed(born));
  await page.click('form[action$="/mon-dossier"] button[type=submit]');
  check((await page.locator('.fr-callout__title').count()) === 1,
    `the status of ${reference}: ${(await page.textContent('main')).replace(/\s+/g, ' ').slice(0, 300)}`);
  await audit(page, `${lang} my file status`, violations);
  // A wrong birth date: refused next to the field.
  await page.goto(BASE + p + '/mon-dossier');
  await page.fill('#reference', reference);
  await page.fill('#birth_date', '01/01/1950');
  await page.click('form[action$="/mon-dossier"] button[type=submit]');
  check((await page.locator('.fr-alert--error').count()) === 1, 'a wrong birth date refused');
  await audit(page, `${lang} my file refused`, violations);
  // I'm blocked: a report, then its page.
  await page.goto(BASE + p + '/bloque');
  await page.selectOption('#category', 'upload_fails');
  await page.fill('#what_was_tried', 'Le téléversement du passeport échoue depuis trois jours.');
  await page.fill('#family_name', 'Diallo');
  await page.fill('#phone', '0612345678');
  await page.fill('#line1', '5 rue de Paris');
  await page.fill('#postal_code', '59000');
  await page.fill('#city', 'Lille');
  await page.click('form[action$="/bloque"] button[type=submit]');
  check(/\/bloque\/[^/?]+\?cle=/.test(page.url()), `the report's page, not ${page.url()}`);
  await audit(page, `${lang} report followed`, violations);
  // An attestation code nobody has: refused in words.
  await page.goto(BASE + p + '/verifier');
  await page.fill('#code', 'ZZZZ-0000');
  await page.click('form[action$="/verifier"] button[type=submit]');
  await audit(page, `${lang} check refused`, violations);
  // A booking at the desk of 59, then its page, then cancelled.
  if (SITE) {
    await page.goto(BASE + p + '/rendez-vous?departement=59');
    await page.click(`a[href^="${p}/rendez-vous/lieu/${SITE}?jour="]`);
    await audit(page, `${lang} slots`, violations);
    BOOKED_DAY.value = await page.inputValue('#jour');
    await page.locator('input[name=starts_at] + label').first().click();
    await page.fill('#family_name', 'Diallo');
    await page.fill('#phone', '0612345678');
    await page.click('form[method=post] button[type=submit]');
    check(page.url().includes('/rendez-vous/suivi/'), `the appointment's page, not ${page.url()}`);
    await audit(page, `${lang} appointment`, violations);
    // Moved to another time the same day, then cancelled.
    const when = await page.textContent('main');
    await page.fill('#jour', BOOKED_DAY.value);
    await page.click('form[method=get] button[type=submit]');
    await audit(page, `${lang} appointment move`, violations);
    await page.locator('input[name=starts_at] + label').last().click();
    await page.click('form[action$="/deplacement"] button[type=submit]');
    const moved = (await page.textContent('main')).replace(/\s+/g, ' ');
    check(moved !== when.replace(/\s+/g, ' ') && (await page.locator('form[action$="/annulation"]').count()) === 1,
      `the appointment moved: ${moved.slice(0, 300)}`);
    await page.click('form[action$="/annulation"] button');
    check((await page.locator('form[action$="/annulation"]').count()) === 0, 'cancelled');
  }
}

const browser = await launch();
try {
  for (const lang of ['fr', 'en']) {
    const context = await browser.newContext({ locale: lang === 'en' ? 'en-GB' : 'fr-FR', acceptDownloads: true });
    const page = await context.newPage();
    for (const [label, path] of PAGES) {
      await expectStatus(await page.goto(BASE + href(lang, path)), 200, `${lang} ${label}`);
      check((await page.getAttribute('html', 'lang')) === lang, `${lang} ${label}: in ${await page.getAttribute('html', 'lang')}`);
      const scripts = await page.locator('script').count();
      check(scripts === 0, `${lang} ${label}: ${scripts} scripts`);
      await audit(page, `${lang} ${label}`, violations);
    }
    say(`${lang}: every page audited`);
    const person = {
      family: lang === 'en' ? 'Okafor' : 'Benali',
      given: lang === 'en' ? 'Chidi' : 'Amina',
      born: lang === 'en' ? '1988-11-30' : '1991-03-02',
      email: `${lang}.person@example.org`,
      expires: '2027-01-31',
      lang,
    };
    const f = await fileWithMouse(page, lang, person);
    filed.push(f);
    say(`${lang}: filed ${f.reference}`);
    await otherPages(page, lang, f.reference, person.born);
    say(`${lang}: my file, report, check, booking`);
    await context.close();
  }
  {
    const context = await browser.newContext({ locale: 'fr-FR' });
    const page = await context.newPage();
    const k = await fileWithKeyboard(page, {
      family: 'Haddad', given: 'Karim', born: '1979-06-15', email: 'k.haddad@example.org', expires: '2027-02-28', lang: 'fr',
    });
    filed.push(k);
    say(`keyboard: filed ${k.reference}`);
    await context.close();
  }
  const weights = [];
  for (const lang of ['fr', 'en']) {
    for (const [label, path] of PAGES) weights.push({ lang, ...(await weigh(browser, href(lang, path), label)) });
  }
  process.stdout.write(JSON.stringify({ filed, violations, weights, steps }) + '\n');
} catch (e) {
  process.stdout.write(JSON.stringify({ error: String(e && e.stack || e), filed, violations, steps }) + '\n');
  process.exitCode = 1;
} finally {
  await browser.close();
}
