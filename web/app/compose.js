// Compose: a new message or a reply, with attachments. A recipient outside the MSSanté
// trust space is refused by the API (422 recipient_outside_trust_space): said plainly.
import { api, ApiError } from "./api.js";
import { field, h, replace } from "./dom.js";
import { t } from "./i18n.js";
import { app, go, notify, report } from "./main.js";
import * as store from "./store.js";

function addresses(text) {
  return text.split(/[,;\s]+/).map((a) => a.trim()).filter(Boolean);
}

export async function compose(element, replyToId) {
  let original = null;
  if (replyToId) original = (await store.getBody(replyToId)) || (await store.getEnvelope(replyToId));
  const from = h(
    "select",
    { name: "mailbox" },
    app.mailboxes.map((m) =>
      h("option", { value: m.id, selected: original?.mailbox_id === m.id }, `${m.display_name || m.address} <${m.address}>`),
    ),
  );
  const to = h("input", { name: "to", type: "text", autocomplete: "off", required: true, value: original?.from?.address || "" });
  const cc = h("input", { name: "cc", type: "text", autocomplete: "off" });
  const subject = h("input", {
    name: "subject",
    required: true,
    value: original ? (/^re\s*:/i.test(original.subject || "") ? original.subject : `RE: ${original.subject || ""}`) : "",
  });
  const text = h("textarea", { name: "text", rows: 10 });
  const files = h("input", { name: "attachments", type: "file", multiple: true });
  const receipt = h("input", { name: "receipt", type: "checkbox", id: "compose-receipt" });
  const status = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary" }, t("send"));
  const form = h(
    "form",
    {
      class: "compose",
      onsubmit: async (event) => {
        event.preventDefault();
        status.textContent = "";
        submit.disabled = true;
        const fields = {
          to: addresses(to.value),
          cc: addresses(cc.value),
          subject: subject.value,
          text: text.value,
          request_read_receipt: receipt.checked,
        };
        if (original) fields.in_reply_to = original.id;
        let options;
        if (files.files.length) {
          const body = new FormData();
          for (const [name, value] of Object.entries(fields)) {
            for (const one of [value].flat()) body.append(name, String(one));
          }
          for (const file of files.files) body.append("attachments", file, file.name);
          options = { method: "POST", form: body };
        } else options = { method: "POST", json: fields };
        try {
          await api(`/mailboxes/${encodeURIComponent(from.value)}/messages`, options);
          notify(t("sent"));
          go(original ? `#/m/${original.mailbox_id}/${original.id}` : `#/m/${from.value}`);
        } catch (error) {
          if (error instanceof ApiError && error.code === "recipient_outside_trust_space") {
            const who = error.problem.recipients?.join(", ") || error.problem.recipient || fields.to.concat(fields.cc).join(", ");
            status.textContent = t("outside_trust_space", { who });
            to.setAttribute("aria-invalid", "true");
            to.focus();
          } else if (error instanceof ApiError) {
            status.textContent = t("error", { detail: error.message });
          } else report(error);
        } finally {
          submit.disabled = false;
        }
      },
    },
    h("h2", {}, original ? t("reply") : t("new_message")),
    field(t("from_mailbox"), from),
    field(t("to"), to, t("to_help")),
    field(t("cc"), cc),
    field(t("subject"), subject),
    field(t("body"), text),
    field(t("files"), files),
    h("div", { class: "check" }, receipt, h("label", { for: "compose-receipt" }, t("request_receipt"))),
    status,
    h("div", { class: "toolbar" }, submit, h("button", { type: "button", onclick: () => history.back() }, t("cancel"))),
  );
  replace(element, form);
  (original ? text : to).focus();
}
