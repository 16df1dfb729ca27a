// The idle lock: nothing of the mail stays on screen or in the bodies store; a TOTP code
// (POST /auth/otp/verify) resumes the session, or the user signs out.
import { api, ApiError } from "./api.js";
import { field, h, replace } from "./dom.js";
import { t } from "./i18n.js";
import { signOut } from "./main.js";
import * as store from "./store.js";

export function lockScreen(root, onUnlocked) {
  store.setMeta("locked", true);
  delete document.body.dataset.view; // the panes' layout rules are not for this screen
  const code = h("input", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: true });
  const status = h("p", { class: "error", role: "alert" });
  replace(
    root,
    h(
      "main",
      { id: "main", class: "signin locked", tabindex: "-1" },
      h(
        "div",
        { class: "card" },
        h("h1", {}, t("locked_title")),
        h("p", {}, t("locked_help")),
        h(
          "form",
          {
            onsubmit: async (event) => {
              event.preventDefault();
              try {
                await api("/auth/otp/verify", { method: "POST", json: { code: code.value } });
                await store.setMeta("locked", false);
                onUnlocked();
              } catch (error) {
                status.textContent = t("error", { detail: error instanceof ApiError ? error.message : String(error) });
              }
            },
          },
          field(t("totp_code"), code),
          status,
          h("button", { type: "submit", class: "primary" }, t("unlock")),
        ),
        h("button", { type: "button", class: "danger", onclick: () => signOut() }, t("sign_out")),
      ),
    ),
  );
  code.focus();
}
