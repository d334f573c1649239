// The agents' workspace in Chromium, signed in at the real OpenID
// provider's own login page (infra/oidc): the instructor of 59 opens the
// queue, takes the next case with the keyboard shortcut, asks for a
// document and decides with the mouse; a case of 75 is refused. axe-core
// runs on every page met, in French and in English.
//
// Environment: GUICHET_URL (the gateway), GUICHET_OTHER_CASE (a case of
// prefecture 75), GUICHET_PASSWORD (the provider's test password).
// Prints one JSON report on stdout: {taken, refused_status, violations}.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BASE, launch, audit, check } from './lib.mjs';

const OTHER = process.env.GUICHET_OTHER_CASE;
const PASSWORD = process.env.GUICHET_PASSWORD;

// What the operator reads off the letter's page and types.
const due = new Date(Date.now() + 40 * 86400e3);
const KEYED = {
  family_name: 'Diallo',
  given_names: 'Mariama',
  birth_date: '14/05/1990',
  birth_place: 'Dakar',
  nationality: 'SEN',
  address_line1: '12 rue Nationale',
  postal_code: '59000',
  city: 'Lille',
  title_number: 'FR59B7654321',
  title_expires_on: `${String(due.getDate()).padStart(2, '0')}/${String(due.getMonth() + 1).padStart(2, '0')}/${due.getFullYear()}`,
};

// What the desk agent types with the person in front of them.
const AT_DESK = {
  'applicant-family_name': 'Guichet',
  'applicant-given_names': 'Farid',
  'applicant-birth_date': '11/11/1979',
  'applicant-nationality': 'MAR',
  'contact-phone': '0633445566',
  'contact-address-line1': '5 rue de Paris',
  'contact-address-postal_code': '59000',
  'contact-address-city': 'Lille',
  'current_title-number': 'FR59E5556667',
  'current_title-expires_on': KEYED.title_expires_on,
};
const PHOTO = join(process.env.GUICHET_FILES || '.', 'photo.png');

const violations = [];
const report = { violations, audited: [] };

async function axe(page, label) {
  report.audited.push(label);
  await audit(page, label, violations);
}

/// Presses Tab until `selector` has the focus; how many presses it took.
async function tabTo(page, selector) {
  for (let n = 1; n <= 40; n++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((s) => document.activeElement?.matches(s), selector)) return n;
  }
  throw new Error(`${selector} never took the focus`);
}

/// Signs `login` in at the provider's own login page, from the door.
async function signIn(page, login) {
  await page.goto(BASE + '/agents');
  await page.getByRole('link', { name: 'Se connecter' }).click();
  await page.waitForURL((u) => u.pathname.startsWith('/interaction/'));
  await page.getByLabel('Login').fill(login);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button').first().click();
  // The provider may ask for consent once.
  for (let i = 0; i < 3 && !page.url().startsWith(BASE); i++) {
    const button = page.getByRole('button').first();
    if (await button.count()) await button.click();
    await page.waitForLoadState('load');
  }
  await page.waitForURL(BASE + '/agents');
}

const browser = await launch();
try {
  const context = await browser.newContext({ locale: 'fr-FR' });
  const page = await context.newPage();

  // The door, signed out, in both languages.
  await page.goto(BASE + '/agents');
  await axe(page, 'door, signed out');
  await page.goto(BASE + '/en/agents');
  await axe(page, 'door, signed out, English');
  await page.goto(BASE + '/agents');

  await signIn(page, 'instructor-59');
  check((await page.textContent('main')).includes('instructor-59'), 'the door names the agent');
  await axe(page, 'door, signed in');

  // The queue, its filters, and take-next by its keyboard shortcut.
  await page.getByRole('link', { name: 'Instruction' }).first().click();
  await page.waitForURL(BASE + '/agents/instruction');
  await axe(page, 'queue');
  await page.selectOption('#f-urgency', 'soon');
  await page.getByRole('button', { name: 'Filtrer' }).click();
  await page.waitForURL((u) => u.search.includes('urgency=soon'));
  await axe(page, 'queue, filtered');
  await page.goto(BASE + '/en/agents/instruction');
  await axe(page, 'queue, English');
  // Take-next with the keyboard alone: Tab from the top of the page to the
  // button, then Enter. (Its access key, Alt+N, is the browser's own and
  // cannot be pressed through the DevTools protocol.)
  await page.goto(BASE + '/agents/instruction');
  report.tabs_to_next = await tabTo(page, 'button[accesskey="n"]');
  await page.keyboard.press('Enter');
  await page.waitForURL((u) => u.pathname.startsWith('/agents/dossiers/'));
  report.taken = decodeURIComponent(page.url().split('/agents/dossiers/')[1]);
  await axe(page, 'case, held');

  // A request without a document is refused in words (and axe-checked).
  await page.getByRole('button', { name: 'Demander ces documents' }).click();
  await page.waitForLoadState('load');
  check(await page.isVisible('#request-kinds-error'), 'the missing choice is named');
  await axe(page, 'case, request refused');

  // Ask for a proof of address within a month.
  const due = new Date(Date.now() + 30 * 86400e3);
  const typed = `${String(due.getDate()).padStart(2, '0')}/${String(due.getMonth() + 1).padStart(2, '0')}/${due.getFullYear()}`;
  // DSFR draws its own box over the input: the label is what one clicks.
  await page.locator('label[for="kind-proof_of_address"]').click();
  await page.getByLabel('Date limite').fill(typed);
  await page.getByRole('button', { name: 'Demander ces documents' }).click();
  await page.waitForLoadState('load');
  check(
    (await page.textContent('main')).includes('Documents demandés'),
    'the case shows the documents asked for',
  );

  // The document arrives (by post, say: recorded through the agents' API
  // with the session's token); the file is complete, and its holder
  // resumes the review.
  const token = await page.getAttribute('input[name="csrf"]', 'value');
  const arrived = await page.request.post(
    `${BASE}/api/v1/agent/dossiers/${report.taken}/documents`,
    {
      headers: { 'x-csrf-token': token },
      data: {
        kind: 'proof_of_address',
        sha256: 'ab'.repeat(32),
        media_type: 'application/pdf',
        size_bytes: 1024,
        filename: 'justificatif.pdf',
        channel: 'postal',
      },
    },
  );
  check(arrived.ok(), `the document recorded: ${arrived.status()} ${await arrived.text()}`);
  await page.goto(BASE + '/agents/dossiers/' + report.taken);
  await axe(page, 'case, complete again');
  await page.getByRole('button', { name: 'Reprendre l’examen' }).click();
  await page.waitForLoadState('load');

  // Decide favourably, with the grounds.
  await page.locator('label[for="outcome-favourable"]').click();
  await page.getByLabel('Motif de la décision').fill('Conditions remplies');
  await page.getByRole('button', { name: 'Enregistrer la décision' }).click();
  await page.waitForLoadState('load');
  check((await page.textContent('main')).includes('Décision favorable'), 'the decision shows');
  await axe(page, 'case, decided');
  await page.goto(BASE + '/en/agents/dossiers/' + report.taken);
  await axe(page, 'case, English');

  // A case of 75: refused, and nothing of it shows.
  const refused = await page.goto(BASE + '/agents/dossiers/' + OTHER);
  report.refused_status = refused.status();
  check(!(await page.textContent('main')).includes('Ailleurs'), 'nothing of 75 shows');
  await axe(page, 'case of 75, refused');

  // Sign out.
  await page.goto(BASE + '/agents');
  await page.getByRole('button', { name: 'Se déconnecter' }).click();
  await page.waitForURL(BASE + '/agents');
  check(await page.getByRole('link', { name: 'Se connecter' }).isVisible(), 'signed out');
  await context.close();

  // The call centre, in a browser of its own (the provider remembers who
  // signed in last): a report opened for a caller, answered with a desk
  // appointment booked on the phone.
  const ccc = await browser.newContext({ locale: 'fr-FR' });
  const desk = await ccc.newPage();
  await signIn(desk, 'ccc-1');
  await desk.getByRole('link', { name: 'Centre d’appels' }).first().click();
  await desk.waitForURL(BASE + '/agents/centre-appels');
  await axe(desk, 'call centre');
  await desk.getByRole('button', { name: 'Ouvrir le signalement' }).click();
  await desk.waitForLoadState('load');
  check(await desk.isVisible('#category-error'), 'the missing category is named');
  await axe(desk, 'call centre, report refused');
  await desk.selectOption('#category', 'appointment_impossible');
    await desk.fill('#what_was_tried', 'Aucun créneau depuis six semaines');
  await desk.fill('#family_name', 'Kone');
  await desk.fill('#given_names', 'Awa');
  await desk.fill('#phone', '0612345678');
  await desk.fill('#line1', '3 rue Nationale');
  await desk.fill('#postal_code', '59000');
  await desk.fill('#city', 'Lille');
  await desk.getByRole('button', { name: 'Ouvrir le signalement' }).click();
  await desk.waitForURL((u) => u.pathname.startsWith('/agents/signalements/'));
  report.report = desk.url().split('/agents/signalements/')[1];
  await axe(desk, 'report');
  await desk.locator('label[for="slot-1"]').click();
  await desk.getByRole('button', { name: 'Réserver et proposer ce rendez-vous' }).click();
  await desk.waitForLoadState('load');
  check((await desk.textContent('main')).includes('Un rendez-vous au guichet'), 'the appointment offered');
  await axe(desk, 'report, answered');
  await desk.goto(BASE + '/en/agents/signalements/' + report.report);
  await axe(desk, 'report, English');
  await ccc.close();

  // The mailroom keys a letter from its page image into a dossier.
  const mail = await browser.newContext({ locale: 'fr-FR' });
  const room = await mail.newPage();
  await signIn(room, 'mailroom-1');
  await room.getByRole('link', { name: 'Courrier' }).first().click();
  await room.waitForURL(BASE + '/agents/courrier');
  await axe(room, 'mailroom');
  await room.locator('a[href^="/agents/courrier/plis/"]').first().click();
  await room.waitForURL((u) => u.pathname.startsWith('/agents/courrier/plis/'));
  const image = room.locator('img[src^="/api/v1/postal/pages/"]').first();
  check(
    await image.evaluate((img) => img.complete && img.naturalWidth > 100),
    'the page image shows',
  );
  await axe(room, 'keying');
  await room.selectOption('#f-procedure', 'renewal');
  await room.selectOption('#f-motif', 'family');
  for (const [key, value] of Object.entries(KEYED)) await room.fill(`#f-${key}`, value);
  await room.selectOption('#f-title_kind', 'temporary_card');
  await room.getByRole('button', { name: 'Confirmer la saisie et déposer' }).click();
  await room.waitForLoadState('load');
  const filed = (await room.textContent('main')).match(/Déposé : dossier (P[0-9A-Z-]+)/);
  check(filed, 'the envelope became a dossier');
  report.keyed = filed[1];
  await axe(room, 'keying, filed');
  await mail.close();

  // A desk files with the person present and a photo scanned at the desk
  // (the multipart form's token is its first part); the photo then shows
  // in the document viewer.
  const deskCtx = await browser.newContext({ locale: 'fr-FR' });
  const counter = await deskCtx.newPage();
  await signIn(counter, 'desk-59');
  await counter.goto(BASE + '/agents/guichet/depot');
  await axe(counter, 'filing at the desk');
  await counter.selectOption('#procedure', 'renewal');
  await counter.selectOption('#motif', 'employee');
  for (const [id, value] of Object.entries(AT_DESK)) await counter.fill(`#${id}`, value);
  await counter.selectOption('#contact-answer_channel', 'sms');
  await counter.selectOption('#current_title-kind', 'temporary_card');
  await counter.setInputFiles('#file-photo', PHOTO);
  await counter.locator('label[for="identity_checked"]').click();
  await counter.getByRole('button', { name: 'Déposer la demande' }).click();
  await counter.waitForLoadState('load');
  const atDesk = (await counter.textContent('main')).match(/Demande déposée : dossier ([A-Z0-9-]+)/);
  check(atDesk, 'filed at the desk');
  report.at_desk = atDesk[1];
  await axe(counter, 'filing at the desk, filed');
  const sha = createHash('sha256').update(readFileSync(PHOTO)).digest('hex');
  let viewer;
  for (let i = 0; i < 60; i++) {
    viewer = await counter.goto(`${BASE}/agents/dossiers/${report.at_desk}/documents/${sha}`);
    if (viewer.status() === 200) break;
    await counter.waitForTimeout(500);
  }
  check(viewer.status() === 200, `the viewer: HTTP ${viewer.status()}`);
  check(
    await counter.locator('img.guichet-document').evaluate((img) => img.complete && img.naturalWidth > 0),
    'the photo shows in the viewer',
  );
  await axe(counter, 'document viewer');
  await deskCtx.close();

  // Every other screen, as the agent who opens it: axe-core on each.
  const visits = [
    ['supervisor-59', ['/agents/supervision', '/agents/journal', '/agents/guichet', '/en/agents/supervision']],
    ['desk-59', ['/agents/guichet', '/en/agents/guichet', '/agents/guichet/depot']],
    ['ccc-1', ['/agents/centre-appels/depot', '/en/agents/centre-appels/depot']],
    ['operator-1', ['/agents/journal', '/agents/supervision', '/ops', '/en/ops']],
  ];
  for (const [login, paths] of visits) {
    const ctx = await browser.newContext({ locale: 'fr-FR' });
    const tab = await ctx.newPage();
    await signIn(tab, login);
    await axe(tab, `door, ${login}`);
    for (const path of paths) {
      const r = await tab.goto(BASE + path);
      check(r.status() === 200, `${login} ${path}: HTTP ${r.status()}`);
      await axe(tab, `${login} ${path}`);
    }
    await ctx.close();
  }
} catch (e) {
  report.error = String(e.stack || e);
  console.log(JSON.stringify(report));
  await browser.close();
  process.exit(1);
}
await browser.close();
console.log(JSON.stringify(report));
