// Sign-in: password, then TOTP (with enrolment from the API's QR code); or a provider the
// gateway lists (GET /auth/methods: Pro Santé Connect, the establishment's IdP), through
// the gateway's OpenID Connect path with PKCE (RFC 7636, 8252) and a same-site redirect.
import { anonymous, ApiError, Offline, saveSession } from "./api.js";
import { field, h, replace } from "./dom.js";
import { t } from "./i18n.js";
import { newPushKey } from "./push.js";
import { reopenStore, setMeta } from "./store.js";

const DEVICE = { name: "Navigateur web", platform: "web" };
const PENDING = "estafette.oidc"; // sessionStorage: the verifier and state of a sign-in under way

// This browser as a device, with a fresh preview key for each sign-in.
async function device() {
  const { sent, kept } = await newPushKey();
  return { spec: { ...DEVICE, push_key: sent }, kept };
}

async function signedIn(session, kept) {
  reopenStore();
  await saveSession(session);
  await setMeta("push_key", kept);
}

function explain(error) {
  if (error instanceof Offline) return t("offline");
  return t("error", { detail: error instanceof ApiError ? error.message : String(error) });
}

function page(title, ...content) {
  delete document.body.dataset.view; // the panes' layout rules are not for this screen
  return h(
    "main",
    { id: "main", class: "signin", tabindex: "-1" },
    h("div", { class: "card" }, h("h1", {}, t("app_name")), h("h2", {}, title), ...content),
  );
}

// The providers the gateway signs in with: {methods: [{name, kind, label}]}.
async function otherMethods() {
  try {
    const answer = await anonymous("/auth/methods");
    return Array.isArray(answer?.methods) ? answer.methods : [];
  } catch {
    return [];
  }
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}

function randomText(size) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

// To the provider, by the gateway: the verifier stays here, its SHA-256 goes along.
async function startProvider(name) {
  const verifier = randomText(48); // 64 characters (RFC 7636: 43 to 128)
  const state = randomText(16);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state }));
  const query = new URLSearchParams({
    redirect_uri: `${location.origin}/`,
    code_challenge: base64url(digest),
    code_challenge_method: "S256",
    state,
  });
  location.assign(`/api/v1/auth/oidc/${encodeURIComponent(name)}/start?${query}`);
}

// Back from the provider (/?code=&state=, or ?error=): redeem the one-time code with the
// verifier kept for it. Null when this page load is no such return.
async function finishProvider() {
  const returned = new URLSearchParams(location.search);
  if (!returned.has("state") || !(returned.has("code") || returned.has("error"))) return null;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING); // one attempt per verifier
  history.replaceState(null, "", location.pathname + location.hash); // the code leaves the URL
  if (!pending || pending.state !== returned.get("state") || !returned.get("code")) {
    throw new Error("no sign-in of ours under way, or the provider refused");
  }
  const { spec, kept } = await device();
  const session = await anonymous("/auth/oidc/exchange", {
    method: "POST",
    json: { code: returned.get("code"), code_verifier: pending.verifier, device: spec },
  });
  return { session, kept };
}

export function signIn(root, onSignedIn) {
  const status = h("p", { class: "error", role: "alert" });
  const username = h("input", { name: "username", autocomplete: "username", required: true });
  const password = h("input", {
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const others = h("div", { class: "others" });
  const form = h(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        status.textContent = "";
        try {
          const mfa = await anonymous("/auth/login", {
            method: "POST",
            json: { username: username.value, password: password.value },
          });
          if (mfa.enrollment_required) enrol(root, mfa.mfa_token, onSignedIn);
          else askCode(root, mfa.mfa_token, onSignedIn);
        } catch (error) {
          status.textContent = explain(error);
        }
      },
    },
    field(t("username"), username),
    field(t("password"), password),
    status,
    h("button", { type: "submit", class: "primary" }, t("continue")),
  );
  replace(root, page(t("sign_in"), form, others));
  username.focus();
  finishProvider().then(
    async (signed) => {
      if (!signed) return;
      await signedIn(signed.session, signed.kept);
      onSignedIn();
    },
    (error) => {
      const ours = error instanceof ApiError || error instanceof Offline;
      status.textContent = ours ? explain(error) : t("provider_failed");
    },
  );
  otherMethods().then((methods) => {
    for (const method of methods) {
      if (typeof method?.name !== "string") continue;
      const label = method.kind === "psc" ? t("sign_in_psc") : t("sign_in_with", { label: method.label });
      others.append(
        h("button", { type: "button", "data-provider": method.name, onclick: () => startProvider(method.name) }, label),
      );
    }
  });
}

function codeInput() {
  return h("input", {
    name: "code",
    inputmode: "numeric",
    autocomplete: "one-time-code",
    required: true,
  });
}

async function enrol(root, mfaToken, onSignedIn) {
  const status = h("p", { class: "error", role: "alert" });
  let enrolment;
  try {
    enrolment = await anonymous("/auth/otp/enroll", { method: "POST", token: mfaToken });
  } catch (error) {
    replace(root, page(t("enrol_title"), h("p", { class: "error", role: "alert" }, explain(error))));
    return;
  }
  const code = codeInput();
  const qr = h("img", {
    class: "qr",
    alt: t("enrol_help"),
    src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(enrolment.qr_svg)}`,
  });
  const form = h(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          const activated = await anonymous("/auth/otp/activate", {
            method: "POST",
            token: mfaToken,
            json: { code: code.value },
          });
          showRecoveryCodes(root, activated.recovery_codes || [], () =>
            askCode(root, mfaToken, onSignedIn),
          );
        } catch (error) {
          status.textContent = explain(error);
        }
      },
    },
    h("p", {}, t("enrol_help")),
    qr,
    h("p", { class: "secret" }, t("enrol_secret", { secret: enrolment.secret })),
    field(t("totp_code"), code),
    status,
    h("button", { type: "submit", class: "primary" }, t("continue")),
  );
  replace(root, page(t("enrol_title"), form));
  code.focus();
}

function showRecoveryCodes(root, codes, next) {
  const button = h("button", { class: "primary", onclick: next }, t("continue"));
  replace(
    root,
    page(
      t("recovery_title"),
      h("p", {}, t("recovery_help")),
      h("ul", { class: "codes" }, codes.map((c) => h("li", {}, h("code", {}, c)))),
      button,
    ),
  );
  button.focus();
}

function askCode(root, mfaToken, onSignedIn) {
  const status = h("p", { class: "error", role: "alert" });
  const code = codeInput();
  const form = h(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          const { spec, kept } = await device();
          const session = await anonymous("/auth/otp", {
            method: "POST",
            token: mfaToken,
            json: { code: code.value, device: spec },
          });
          await signedIn(session, kept);
          onSignedIn();
        } catch (error) {
          status.textContent = explain(error);
        }
      },
    },
    field(t("totp_code"), code),
    status,
    h("button", { type: "submit", class: "primary" }, t("sign_in")),
  );
  replace(root, page(t("sign_in"), form));
  code.focus();
}
