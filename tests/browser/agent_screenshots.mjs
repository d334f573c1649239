// Screenshots of the agents' workspace, from a running `guichet up`
// (its development sign-in page: one button per development agent). It
// seeds what the screens show through the public API and the pages
// themselves: filings, a report, a scanned envelope.
//
// Environment: GUICHET_URL (http://127.0.0.1:8080), GUICHET_SHOTS
// (docs/screenshots). Writes agents-*.png there.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BASE, launch, check } from './lib.mjs';

const OUT = process.env.GUICHET_SHOTS || join(process.cwd(), '../../docs/screenshots');
mkdirSync(OUT, { recursive: true });
const example = JSON.parse(
  readFileSync(new URL('../../examples/filings/renewal-employee.json', import.meta.url)),
);

function days(n) {
  return new Date(Date.now() + n * 86400e3).toISOString().slice(0, 10);
}

/// Files a renewal for `name`, its title ending in `expires` days.
async function file(name, given, expires, postal = '59000') {
  const body = structuredClone(example);
  body.applicant.family_name = name;
  body.applicant.given_names = given;
  body.applicant.foreigner_number = String(Math.floor(1e9 + Math.random() * 8e9));
  body.contact.address.postal_code = postal;
  body.current_title.expires_on = days(expires);
  const r = await fetch(BASE + '/api/v1/dossiers', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (r.status !== 201) throw new Error(`filing ${name}: ${r.status} ${await r.text()}`);
  return (await r.json()).reference;
}

/// A scanning station's token from the development issuer, and a blank
/// paper form uploaded as a stack of one envelope.
async function scanEnvelope() {
  const login = await fetch(BASE + '/auth/login', { redirect: 'manual' });
  const issuer = new URL(login.headers.get('location')).origin;
  const token = await fetch(issuer + '/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: 'guichet-scanner-1',
      client_secret: 'guichet-scanner-1-dev-secret',
    }),
  });
  check(token.ok, `the station's token: ${token.status}`);
  const { access_token } = await token.json();
  const form = await (await fetch(BASE + '/formulaire')).arrayBuffer();
  const data = new FormData();
  data.append('station_id', 'station-59-1');
  data.append('reception_date', days(0));
  data.append('page', new Blob([form], { type: 'application/pdf' }), 'formulaire.pdf');
  const r = await fetch(BASE + '/api/v1/postal/batches', {
    method: 'POST',
    headers: { authorization: `Bearer ${access_token}` },
    body: data,
  });
  if (r.status !== 201) throw new Error(`the stack uploaded: ${r.status} ${await r.text()}`);
}

async function signIn(page, uid) {
  await page.goto(BASE + '/agents');
  await page.getByRole('link', { name: 'Se connecter' }).click();
  await page.getByRole('button', { name: uid, exact: true }).click();
  await page.waitForURL(BASE + '/agents');
}

async function shot(page, name) {
  await page.screenshot({ path: join(OUT, `agents-${name}.png`), fullPage: true });
}

await file('Lefort', 'Nadia', 10);
await file('Okafor', 'Emeka', 45);
await file('Haddad', 'Yasmine', 200);
await file('Moreau', 'Jules', 30, '75011');
await scanEnvelope();
// A desk of 59 for appointments, set by its supervisor over gRPC is not
// at hand here: `guichet up` starts with none, so the call centre offers a
// paper kit.

const browser = await launch();
const session = async (uid, shots) => {
  const context = await browser.newContext({ locale: 'fr-FR', viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await signIn(page, uid);
  await shots(page);
  await context.close();
};
try {
  const anonymous = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await anonymous.goto(BASE + '/agents');
  await shot(anonymous, 'door');
  await anonymous.goto(BASE + '/donnees');
  await shot(anonymous, 'open-data');
  await anonymous.close();

  await session('instructor-59', async (page) => {
    await shot(page, 'door-instructor');
    await page.goto(BASE + '/agents/instruction');
    await shot(page, 'queue');
    await page.goto(BASE + '/en/agents/instruction');
    await shot(page, 'queue-en');
    await page.goto(BASE + '/agents/instruction');
    await page.getByRole('button', { name: 'Prendre le dossier suivant' }).click();
    await page.waitForURL((u) => u.pathname.startsWith('/agents/dossiers/'));
    await shot(page, 'case');
  });
  await session('ccc-1', async (page) => {
    await page.goto(BASE + '/agents/centre-appels');
    await page.selectOption('#category', 'appointment_impossible');
    await page.fill('#what_was_tried', 'Aucun créneau en ligne depuis six semaines');
    await page.fill('#family_name', 'Kone');
    await page.fill('#given_names', 'Awa');
    await page.fill('#phone', '0612345678');
    await page.fill('#line1', '3 rue Nationale');
    await page.fill('#postal_code', '59000');
    await page.fill('#city', 'Lille');
    await page.getByRole('button', { name: 'Ouvrir le signalement' }).click();
    await page.waitForURL((u) => u.pathname.startsWith('/agents/signalements/'));
    await shot(page, 'report');
    await page.goto(BASE + '/agents/centre-appels');
    await shot(page, 'call-centre');
    await page.goto(BASE + '/agents/centre-appels/depot');
    await shot(page, 'on-behalf');
  });
  await session('mailroom-1', async (page) => {
    for (let i = 0; i < 60; i++) {
      await page.goto(BASE + '/agents/courrier');
      if (await page.locator('a[href^="/agents/courrier/plis/"]').count()) break;
      await page.waitForTimeout(1000);
    }
    await shot(page, 'mailroom');
    await page.locator('a[href^="/agents/courrier/plis/"]').first().click();
    await page.waitForURL((u) => u.pathname.startsWith('/agents/courrier/plis/'));
    await shot(page, 'keying');
  });
  await session('supervisor-59', async (page) => {
    await page.goto(BASE + '/agents/supervision');
    await shot(page, 'supervision');
    await page.goto(BASE + '/agents/journal');
    await shot(page, 'journal');
    await page.goto(BASE + '/agents/guichet');
    await shot(page, 'desk');
    await page.goto(BASE + '/agents/guichet/depot');
    await shot(page, 'assisted');
  });
  await session('operator-1', async (page) => {
    await page.goto(BASE + '/ops');
    await shot(page, 'ops');
  });
} finally {
  await browser.close();
}
console.log(`screenshots written to ${OUT}`);
