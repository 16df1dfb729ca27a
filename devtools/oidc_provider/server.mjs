// The certified oidc-provider, configured like Pro Santé Connect, for tests and the demo.
//
// Read the configuration from the JSON file named by OIDC_FIXTURE_CONFIG (never from the
// command line: it holds client secrets). Listens on 127.0.0.1, on the configured port or a
// free one, and prints one line `listening <port>` once it serves.
//
// Everything under /devtools and the interaction page are testing hooks of this fixture,
// not of any real provider:
//   GET  /interaction/:uid?account=ID&acr=eidas1&amr=sc  signs ID in without a form
//        (no query: the configured default account, for the demo)
//   POST /devtools/accounts        {"ID": {claims}}: add or replace accounts
//   POST /devtools/tamper          {"claims": {...}, "unknown_key": true}: the next token
//        response carries an ID token with these claims changed (null removes one), or
//        signed with a key the JWKS does not publish
//   POST /devtools/backchannel-logout {"client_id", "account", "sid"?}: the provider's own
//        back-channel logout (OIDC Back-Channel Logout 1.0) to that client
//   POST /devtools/revoke-grants   {"account"}: withdraw every grant (consent) of the account
import { readFileSync } from 'node:fs';
import http from 'node:http';

import * as jose from 'jose';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.env.OIDC_FIXTURE_CONFIG, 'utf8'));
const accounts = new Map(Object.entries(config.accounts ?? {}));
const grantsByAccount = new Map();
let tamper = null;

async function signingKey(kid) {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  return { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
}

const publishedKey = await signingKey('fixture-signing');
const unknownKey = await signingKey('not-published');

const PSC_CLAIMS = ['SubjectNameID', 'SubjectRefPro', 'SubjectOrganization', 'given_name', 'family_name', 'preferred_username'];

const configuration = {
  clients: config.clients,
  jwks: { keys: [publishedKey] },
  cookies: { keys: [config.cookie_key ?? 'fixture-cookie-key-not-a-secret'] },
  scopes: ['openid', 'offline_access', 'scope_all', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub', 'acr', 'amr', 'auth_time', 'sid'],
    scope_all: PSC_CLAIMS,
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
    email: ['email'],
    groups: ['groups', 'roles'],
  },
  acrValues: ['eidas1', 'eidas2', 'eidas3'],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    introspection: { enabled: true },
    revocation: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  ttl: {
    AccessToken: config.access_token_seconds ?? 600,
    IdToken: 600,
    RefreshToken: 86400,
    Grant: 86400,
    Session: 86400,
    Interaction: 600,
    AuthorizationCode: 60,
  },
  // An access token names its user's mailbox address (introspection answers it), so that
  // Dovecot's oauth2 passdb accepts it for that mailbox only.
  extraTokenClaims: async (ctx, token) => {
    const email = accounts.get(token.accountId)?.email;
    return email ? { email } : undefined;
  },
  // PSC hands out refresh tokens without offline_access.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  // The fixture's relying parties listen on loopback, which the provider's SSRF guard
  // refuses by default (it drops connections to special-use addresses): not here.
  fetch: (url, { dispatcher, ...options }) => globalThis.fetch(url, options),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    if (!accounts.has(id)) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...accounts.get(id) }) };
  },
  // A first-party client: the grant covers what was asked, no consent page.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const found = await ctx.oidc.provider.Grant.find(grantId);
      if (found) return found;
    }
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(ctx.oidc.params.scope ?? 'openid');
    grant.addOIDCClaims(['sub', ...PSC_CLAIMS, 'name', 'email', 'groups', 'roles']);
    const id = await grant.save();
    const list = grantsByAccount.get(ctx.oidc.session.accountId) ?? [];
    list.push(id);
    grantsByAccount.set(ctx.oidc.session.accountId, list);
    return grant;
  },
};

const server = http.createServer();
await new Promise((resolve) => { server.listen(config.port ?? 0, '127.0.0.1', resolve); });
const { port } = server.address();
const provider = new Provider(config.issuer ?? `http://127.0.0.1:${port}`, configuration);

async function readJson(ctx) {
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
}

async function retokenize(idToken) {
  const claims = { ...jose.decodeJwt(idToken), ...(tamper.claims ?? {}) };
  for (const [name, value] of Object.entries(claims)) if (value === null) delete claims[name];
  const jwk = tamper.unknown_key ? unknownKey : publishedKey;
  return new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: jwk.kid })
    .sign(await jose.importJWK(jwk, 'RS256'));
}

provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path.startsWith('/interaction/')) {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const account = ctx.query.account ?? config.default_login?.account;
    if (!account || !accounts.has(account)) {
      ctx.status = 400;
      ctx.body = { error: 'unknown_account', account: account ?? null };
      return;
    }
    const amr = ctx.query.amr ? String(ctx.query.amr).split(',') : (config.default_login?.amr ?? ['pwd']);
    const result = {
      login: { accountId: account, acr: ctx.query.acr ?? config.default_login?.acr ?? 'eidas1', amr },
    };
    if (details.prompt.name !== 'login') result.consent = {};
    ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false }));
    return;
  }
  if (ctx.method === 'POST' && ctx.path === '/devtools/accounts') {
    for (const [id, claims] of Object.entries(await readJson(ctx))) accounts.set(id, claims);
    ctx.status = 204;
    return;
  }
  if (ctx.method === 'POST' && ctx.path === '/devtools/tamper') {
    tamper = await readJson(ctx);
    ctx.status = 204;
    return;
  }
  if (ctx.method === 'POST' && ctx.path === '/devtools/backchannel-logout') {
    const body = await readJson(ctx);
    const client = await provider.Client.find(body.client_id);
    try {
      await client.backchannelLogout(body.account, body.sid);
    } catch (error) {
      ctx.status = 502;
      ctx.body = { error: 'delivery_failed', detail: String(error.cause ?? error) };
      return;
    }
    ctx.status = 204;
    return;
  }
  if (ctx.method === 'POST' && ctx.path === '/devtools/revoke-grants') {
    const body = await readJson(ctx);
    for (const id of grantsByAccount.get(body.account) ?? []) {
      await provider.Grant.adapter.destroy(id);
    }
    grantsByAccount.delete(body.account);
    ctx.status = 204;
    return;
  }
  await next();
  if (tamper && ctx.path === '/token' && ctx.body?.id_token) {
    ctx.body = { ...ctx.body, id_token: await retokenize(ctx.body.id_token) };
    tamper = null;
  }
});

server.on('request', provider.callback());
process.stdout.write(`listening ${port}\n`);
