// Sign-in: password, then TOTP (with enrolment from the API's QR code). PSC and the CPS
// card appear only when the gateway lists them (GET /auth/methods, when it exists).
import { anonymous, ApiError, Offline, saveSession } from "./api.js";
import { field, h, replace } from "./dom.js";
import { t } from "./i18n.js";

const DEVICE = { name: "Navigateur web", platform: "web" };

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

// The hook for other sign-in methods: an answer like {methods: [{id: "psc", url}, ...]}.
async function otherMethods() {
  try {
    const answer = await anonymous("/auth/methods");
    return Array.isArray(answer?.methods) ? answer.methods : [];
  } catch {
    return [];
  }
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
  otherMethods().then((methods) => {
    for (const method of methods) {
      if (!["psc", "cps"].includes(method.id) || !method.url) continue;
      others.append(
        h("a", { class: "button", href: method.url }, t(method.id === "psc" ? "sign_in_psc" : "sign_in_cps")),
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
          const session = await anonymous("/auth/otp", {
            method: "POST",
            token: mfaToken,
            json: { code: code.value, device: DEVICE },
          });
          await saveSession(session);
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
