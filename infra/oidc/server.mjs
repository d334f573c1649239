// A DEVELOPMENT OpenID provider for Guichet's tests and compose: the
// certified `oidc-provider`, with the clients Guichet needs and one test
// agent per role. It takes any of its test users' logins with the password
// below and has an unauthenticated key-rotation endpoint: never expose it
// beyond a developer's machine or a test network, never use it in production.
//
// Environment:
//   OIDC_HOST            where to listen (127.0.0.1)
//   OIDC_PORT            the port (0: any free one; the issuer says which)
//   OIDC_ISSUER          the issuer URL (http://OIDC_HOST:PORT)
//   OIDC_KEYS_FILE       signing keys (a private JWKS): read if the file
//                        exists, else generated and written there, so a
//                        restart, or a second issuer, can use the same keys
//   OIDC_GATEWAY_REDIRECT_URIS  comma-separated redirect URIs of the
//                        gateway's browser sign-in
//                        (http://127.0.0.1:8080/auth/callback)
//
// Once listening it prints one JSON line on stdout:
//   {"issuer": "...", "rotate_keys": "..."}
//
// POST /admin/rotate-keys makes new signing keys (RS256 and ES256) and signs
// with them from then on; the previous keys stay published so tokens already
// issued still verify. `?retire=1` drops the previous keys instead.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const DEV_PASSWORD = 'guichet-dev';

// The API's resource indicator and the audience of its access tokens.
const API_RESOURCE = 'urn:guichet:api';
const API_AUDIENCE = 'guichet';
// Another API on the same issuer: its tokens must not open Guichet.
const OTHER_RESOURCE = 'urn:example:other-api';
const OTHER_AUDIENCE = 'other-api';
// Guichet's tokens are signed ES256, the other API's RS256: both are checked.
const RESOURCE_SERVERS = new Map([
  [API_RESOURCE, { scope: 'guichet', audience: API_AUDIENCE, alg: 'ES256' }],
  [OTHER_RESOURCE, { scope: 'other', audience: OTHER_AUDIENCE, alg: 'RS256' }],
]);

// One agent per role Guichet assigns (the roles are Guichet's, not the
// provider's: this only says who each login is meant to be). ProConnect's
// claims: uid, email, given_name, usual_name, siret.
const USERS = [
  ['instructor-59', 'Inès', 'Lefebvre', 'instructor of prefecture 59'],
  ['instructor-75', 'Paul', 'Martin', 'instructor of prefecture 75'],
  ['desk-59', 'Awa', 'Diallo', 'desk agent of prefecture 59'],
  ['ccc-1', 'Karim', 'Benali', 'call-centre agent'],
  ['mailroom-1', 'Sophie', 'Durand', 'mailroom operator'],
  ['supervisor-59', 'Claire', 'Moreau', 'supervisor of prefecture 59'],
  ['operator-1', 'Luc', 'Bernard', 'operator / auditor'],
];
const ACCOUNTS = new Map(USERS.map(([uid, given, usual, role], i) => [
  // `sub` differs from `uid`, as at ProConnect: code must not mix them up.
  `sub-${String(i + 1).padStart(4, '0')}`,
  {
    uid,
    role,
    claims: {
      uid,
      email: `${uid}@interieur.gouv.test`,
      given_name: given,
      usual_name: usual,
      siret: '11000001300019',
    },
  },
]));

const MACHINE_CLIENTS = [
  ['guichet-ccc-software', 'call-centre software'],
  ['guichet-desk-software', 'desk software'],
  ['guichet-scanner-1', 'mailroom scanning station'],
];

function env(name, fallback) {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : v;
}

function newKeys() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const stamp = `${Date.now().toString(36)}-${crypto.randomBytes(3).toString('hex')}`;
  return [
    { ...rsa.export({ format: 'jwk' }), kid: `rs-${stamp}`, alg: 'RS256', use: 'sig' },
    { ...ec.export({ format: 'jwk' }), kid: `es-${stamp}`, alg: 'ES256', use: 'sig' },
  ];
}

function initialKeys() {
  const file = env('OIDC_KEYS_FILE');
  if (file && fs.existsSync(file)) {
    return JSON.parse(fs.readFileSync(file, 'utf8')).keys;
  }
  const keys = newKeys();
  if (file) fs.writeFileSync(file, JSON.stringify({ keys }), { mode: 0o600 });
  return keys;
}

function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head>
<body><p><strong>Development issuer: not for production.</strong></p><h1>${title}</h1>${body}</body></html>`;
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginForm(uid, problem) {
  const users = [...ACCOUNTS.values()]
    .map((a) => `<li><code>${a.uid}</code>: ${a.role}</li>`).join('');
  return page('Sign in', `${problem ? `<p role="alert">${escapeHtml(problem)}</p>` : ''}
<form method="post" action="/interaction/${uid}/login">
<label>Login <input name="login" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form><p>Test agents (password <code>${DEV_PASSWORD}</code>):</p><ul>${users}</ul>`);
}

function configuration(keys, redirectUris) {
  return {
    jwks: { keys },
    clients: [
      {
        client_id: 'guichet-gateway',
        client_secret: 'guichet-gateway-dev-secret',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: redirectUris,
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'RS256',
      },
      ...MACHINE_CLIENTS.map(([clientId]) => ({
        client_id: clientId,
        client_secret: `${clientId}-dev-secret`,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      })),
    ],
    // ProConnect's scopes and claims.
    claims: {
      openid: ['sub'],
      uid: ['uid'],
      email: ['email'],
      given_name: ['given_name'],
      usual_name: ['usual_name'],
      siret: ['siret'],
    },
    // ProConnect puts them in the ID token too.
    conformIdTokenClaims: false,
    async findAccount(_ctx, sub) {
      const account = ACCOUNTS.get(sub);
      if (!account) return undefined;
      return { accountId: sub, async claims() { return { sub, ...account.claims }; } };
    },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Access tokens are for the API unless a client asks for another.
        async defaultResource() { return API_RESOURCE; },
        async useGrantedResource() { return true; },
        async getResourceServerInfo(_ctx, resource) {
          const api = RESOURCE_SERVERS.get(resource);
          if (api) {
            return {
              scope: api.scope,
              audience: api.audience,
              accessTokenFormat: 'jwt',
              accessTokenTTL: 300,
              jwt: { sign: { alg: api.alg } },
            };
          }
          throw new errors.InvalidTarget();
        },
      },
    },
    // An agent's access token names them as Guichet knows them.
    async extraTokenClaims(_ctx, token) {
      const account = token.accountId && ACCOUNTS.get(token.accountId);
      return account ? { uid: account.uid } : undefined;
    },
    // The agents' sign-in needs no consent screen: Guichet is the
    // administration's own service.
    async loadExistingGrant(ctx) {
      const existing = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (existing) return ctx.oidc.provider.Grant.find(existing);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid uid email given_name usual_name siret');
      grant.addResourceScope(API_RESOURCE, 'guichet');
      await grant.save();
      return grant;
    },
    pkce: { required: () => true },
    ttl: {
      AccessToken: 300,
      AuthorizationCode: 60,
      ClientCredentials: 300,
      IdToken: 300,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      RefreshToken: 3600,
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error', Object.entries(out)
        .map(([k, v]) => `<p><strong>${escapeHtml(k)}</strong>: ${escapeHtml(v)}</p>`).join(''));
    },
  };
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, body, type = 'text/html; charset=utf-8') {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

async function interaction(provider, req, res, uid, isLogin) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, page('Error', '<p>Stale sign-in; start again.</p>'));
  if (details.prompt.name === 'login') {
    if (!isLogin || req.method !== 'POST') return send(res, 200, loginForm(uid));
    const form = await readForm(req);
    const login = form.get('login') ?? '';
    const found = [...ACCOUNTS].find(([, a]) => a.uid === login);
    if (!found || form.get('password') !== DEV_PASSWORD) {
      return send(res, 401, loginForm(uid, 'Unknown login or wrong password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: found[0] } }, {
      mergeWithLastSubmission: false,
    });
  }
  // Consent: granted as asked (a first-party service, see loadExistingGrant).
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
  const { missingOIDCScope, missingResourceScopes } = details.prompt.details;
  if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
  for (const [resource, scopes] of Object.entries(missingResourceScopes ?? {})) {
    grant.addResourceScope(resource, scopes.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, {
    mergeWithLastSubmission: true,
  });
}

async function main() {
  const host = env('OIDC_HOST', '127.0.0.1');
  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(env('OIDC_PORT', '0')), host, resolve);
  });
  const { port } = server.address();
  const issuer = env('OIDC_ISSUER', `http://${host}:${port}`);
  const redirectUris = env('OIDC_GATEWAY_REDIRECT_URIS', 'http://127.0.0.1:8080/auth/callback')
    .split(',').map((s) => s.trim()).filter(Boolean);

  let keys = initialKeys();
  const make = () => {
    const provider = new Provider(issuer, configuration(keys, redirectUris));
    provider.on('server_error', (_ctx, err) => console.error('oidc server error:', err));
    return { provider, handle: provider.callback() };
  };
  // Replaced whole on a key rotation: same issuer, same clients, new keys.
  let current = make();

  server.on('request', async (req, res) => {
    const { provider, handle } = current;
    try {
      const url = new URL(req.url, 'http://issuer');
      if (url.pathname === '/admin/rotate-keys') {
        if (req.method !== 'POST') return send(res, 405, 'POST only', 'text/plain');
        const fresh = newKeys();
        keys = url.searchParams.get('retire') === '1' ? fresh : [...fresh, ...keys];
        current = make();
        return send(res, 200, JSON.stringify({ signing: fresh.map((k) => k.kid) }), 'application/json');
      }
      const m = url.pathname.match(/^\/interaction\/([\w-]+)(\/login)?$/);
      if (m) return await interaction(provider, req, res, m[1], Boolean(m[2]));
      return handle(req, res);
    } catch (err) {
      if (err instanceof errors.SessionNotFound) {
        return send(res, 400, page('Error', '<p>Sign-in session not found; start again.</p>'));
      }
      console.error('oidc request failed:', err);
      if (!res.headersSent) send(res, 500, page('Error', '<p>Internal error.</p>'));
    }
  });

  const shutdown = () => server.close(() => process.exit(0));
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  console.log(JSON.stringify({ issuer, rotate_keys: `${issuer}/admin/rotate-keys` }));
}

main().catch((err) => {
  console.error('oidc provider failed to start:', err);
  process.exit(1);
});
