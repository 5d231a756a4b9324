// A real OpenID Connect provider for gateway's login tests: Panva's certified oidc-provider on a
// loopback port, one static confidential client, the accounts in accounts.json (with `groups`
// claims), and a small login form in place of oidc-provider's development interactions (those
// accept any password). Consent is granted without asking: the client is first-party.
//
// Configuration (environment):
//   OIDC_PORT             port to listen on (127.0.0.1)
//   OIDC_CLIENT_ID        the static client's id
//   OIDC_CLIENT_SECRET    its secret (environment only: never on a command line)
//   OIDC_REDIRECT_URIS    space-separated redirect URIs registered for the client
//   OIDC_REQUIRE_PKCE     "1" (default): the client must send a PKCE S256 challenge
// Prints "ready <issuer>" on stdout once it listens; exits non-zero on a configuration error.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { Provider } from 'oidc-provider';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`oidc_idp: ${name} is required`);
    process.exit(2);
  }
  return value;
}

const port = Number(required('OIDC_PORT'));
const issuer = `http://127.0.0.1:${port}`;
const accounts = JSON.parse(fs.readFileSync(new URL('./accounts.json', import.meta.url), 'utf8'));
const requirePkce = (process.env.OIDC_REQUIRE_PKCE ?? '1') === '1';

const client = {
  client_id: required('OIDC_CLIENT_ID'),
  client_secret: required('OIDC_CLIENT_SECRET'),
  redirect_uris: required('OIDC_REDIRECT_URIS').split(/\s+/).filter(Boolean),
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  // oauthenticator sends the secret in the body unless basic_auth is set
  token_endpoint_auth_method: process.env.OIDC_CLIENT_AUTH_METHOD || 'client_secret_post',
};

function findAccount(_ctx, sub) {
  const account = accounts[sub];
  if (!account) return undefined;
  return {
    accountId: sub,
    async claims() {
      return {
        sub,
        preferred_username: sub,
        name: account.name,
        email: account.email,
        email_verified: true,
        groups: account.groups,
      };
    },
  };
}

// A signing key made per run: tokens from one run mean nothing to the next.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-run', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [client],
  findAccount,
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  features: { devInteractions: { enabled: false } },
  pkce: { required: () => requirePkce },
  // the hub keeps the refresh token in auth_state (refresh_user) without asking for offline_access
  issueRefreshToken: async (_ctx, c) => c.grantTypeAllowed('refresh_token'),
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 600,
    Grant: 3600,
    Session: 3600,
    RefreshToken: 86400,
  },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Sign-in error', `<p id="error">${escape(out.error)}: ${escape(out.error_description || '')}</p>`);
  },
});

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escape(title)}</title></head>`
    + `<body><h1>University sign-in</h1>${body}</body></html>`;
}

function loginForm(uid, clientId, error) {
  return page('Sign in', `
    <p>Signing in to <b>${escape(clientId)}</b></p>
    ${error ? `<p id="error" role="alert">${escape(error)}</p>` : ''}
    <form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
      <label>Username <input name="username" autofocus></label>
      <label>Password <input name="password" type="password"></label>
      <button type="submit">Sign in</button>
    </form>
    <a href="/interaction/${escape(uid)}/abort">Cancel</a>`);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16384) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(html);
}

function passwordMatches(account, given) {
  const a = crypto.createHash('sha256').update(account.password).digest();
  const b = crypto.createHash('sha256').update(given).digest();
  return crypto.timingSafeEqual(a, b);
}

// Consent for the first-party client: grant what the request asks for, without a page.
async function grantConsent(details) {
  const { prompt: { details: missing }, params, session: { accountId } } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scope] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scope.join(' '));
    }
  }
  return { consent: { grantId: await grant.save() } };
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, page('Bad request', '<p>interaction mismatch</p>'));
  const { prompt, params } = details;

  if (action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'the user cancelled the sign-in',
    }, { mergeWithLastSubmission: false });
  }
  if (prompt.name === 'consent') {
    return provider.interactionFinished(req, res, await grantConsent(details), { mergeWithLastSubmission: true });
  }
  if (prompt.name !== 'login') return send(res, 400, page('Bad request', `<p>unknown prompt ${escape(prompt.name)}</p>`));
  if (action === '' && req.method === 'GET') return send(res, 200, loginForm(uid, params.client_id));
  if (action === 'login' && req.method === 'POST') {
    const form = await readForm(req);
    const username = form.get('username') || '';
    const account = Object.hasOwn(accounts, username) ? accounts[username] : null;
    if (!account || !passwordMatches(account, form.get('password') || '')) {
      return send(res, 401, loginForm(uid, params.client_id, 'Wrong username or password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: username } }, { mergeWithLastSubmission: false });
  }
  return send(res, 405, page('Not allowed', '<p>method not allowed</p>'));
}

const providerCallback = provider.callback();
const INTERACTION = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|abort))?\/?$/;

const server = http.createServer(async (req, res) => {
  const path = new URL(req.url, issuer).pathname;
  const match = INTERACTION.exec(path);
  if (!match) return providerCallback(req, res);
  try {
    await interaction(req, res, match[1], match[2] || '');
  } catch (err) {
    // an unknown or expired interaction (no cookie, replayed form): a clear 400, never a stack trace
    if (!res.headersSent) send(res, 400, page('Sign-in error', `<p id="error">${escape(err.message)}</p>`));
  }
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
