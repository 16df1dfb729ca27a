// Reading: the sanitised HTML in a sandboxed iframe (no script, no remote content),
// attachments to download, IHE XDM documents with their patient and type, and actions.
// The body is kept in IndexedDB once opened, and wiped at lock and sign-out.
import { api, ApiError } from "./api.js";
import { formatDate, formatSize, h, replace } from "./dom.js";
import { language, t } from "./i18n.js";
import * as list from "./list.js";
import { go, notify, report } from "./main.js";
import * as store from "./store.js";

let shown = null;

export function forget(element) {
  shown = null;
  replace(element);
}

async function load(id) {
  try {
    const message = await api(`/messages/${encodeURIComponent(id)}`);
    await store.putBody(message);
    return message;
  } catch (error) {
    const kept = await store.getBody(id);
    if (kept) {
      report(error);
      return kept;
    }
    throw error;
  }
}

// The frame inherits the page's CSP (no remote image or font), and its sandbox has no
// allow-scripts nor allow-same-origin: the message cannot run code or reach the app.
function frame(html) {
  const policy = "default-src 'none'; img-src data:; style-src 'unsafe-inline'";
  return h("iframe", {
    class: "body-frame",
    title: t("message_frame"),
    sandbox: "",
    referrerpolicy: "no-referrer",
    srcdoc: `<!doctype html><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="${policy}"><base target="_blank">${html}`,
  });
}

async function download(message, part, filename) {
  try {
    const response = await api(`/messages/${encodeURIComponent(message.id)}/attachments/${part}`, { raw: true });
    const url = URL.createObjectURL(await response.blob());
    const link = h("a", { href: url, download: filename || "piece-jointe" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    report(error);
  }
}

function patientLine(patient) {
  if (!patient) return null;
  return [
    patient.name,
    patient.birth_date ? t("born", { date: new Date(patient.birth_date).toLocaleDateString(language() === "en" ? "en-GB" : "fr-FR") }) : null,
    patient.ins ? `INS ${patient.ins}` : null,
  ].filter(Boolean).join(" · ");
}

function attachments(message) {
  if (!message.attachments?.length) return null;
  const documents = message.attachments.flatMap((a) => a.documents || []);
  return [
    h("h3", {}, t("attachments")),
    h(
      "ul",
      { class: "attachments" },
      message.attachments.map((a) =>
        h(
          "li",
          {},
          h(
            "button",
            { type: "button", class: "link", onclick: () => download(message, a.part, a.filename) },
            t("download", { name: a.filename || a.part }),
          ),
          h("span", { class: "meta" }, ` ${a.content_type} · ${formatSize(a.size || 0)}`),
        ),
      ),
    ),
    documents.length
      ? [
          h("h3", {}, t("documents")),
          h(
            "ul",
            { class: "documents" },
            documents.map((d) =>
              h(
                "li",
                {},
                h("strong", {}, d.title || d.code_display || d.code),
                h("span", { class: "meta" }, ` ${d.code_display || ""}${d.code ? ` (${d.code})` : ""}`),
                d.patient ? h("div", { class: "patient" }, `${t("patient")} : ${patientLine(d.patient)}`) : null,
                h(
                  "button",
                  { type: "button", class: "link", onclick: () => download(message, d.part, `${d.title || "document"}.xml`) },
                  t("download", { name: d.title || d.part }),
                ),
              ),
            ),
          ),
        ]
      : null,
  ];
}

async function patch(message, change) {
  try {
    const envelope = await api(`/messages/${encodeURIComponent(message.id)}`, { method: "PATCH", json: change });
    Object.assign(message, envelope);
    list.updateEnvelope(envelope);
    await store.putBody(message);
    return true;
  } catch (error) {
    report(error);
    return false;
  }
}

function actions(element, message) {
  const flag = h("button", { type: "button", "aria-pressed": String(Boolean(message.flagged)) }, message.flagged ? t("unflag") : t("flag"));
  flag.onclick = async () => {
    if (await patch(message, { flagged: !message.flagged })) render(element, message, flag);
  };
  const seen = h("button", { type: "button" }, message.seen ? t("mark_unread") : t("mark_read"));
  seen.onclick = async () => {
    if (await patch(message, { seen: !message.seen })) render(element, message, seen);
  };
  const remove = h("button", {
    type: "button",
    class: "danger",
    onclick: async () => {
      try {
        await api(`/messages/${encodeURIComponent(message.id)}`, { method: "DELETE" });
        list.removeEnvelope(message.id);
        go(`#/m/${message.mailbox_id}`);
      } catch (error) {
        report(error);
      }
    },
  }, t("delete"));
  const move = h("button", { type: "button", onclick: () => offerMove(element, message, move) }, t("move"));
  return h(
    "div",
    { class: "toolbar", role: "toolbar", "aria-label": t("reader") },
    h("a", { class: "button primary", href: `#/compose/reply/${message.id}` }, t("reply")),
    flag,
    seen,
    move,
    remove,
  );
}

async function offerMove(element, message, button) {
  let folders;
  try {
    folders = await api(`/mailboxes/${encodeURIComponent(message.mailbox_id)}/folders`);
  } catch (error) {
    return report(error);
  }
  const select = h("select", { id: "move-folder" }, folders.filter((f) => f.name !== message.folder).map((f) => h("option", { value: f.name }, f.name)));
  const form = h(
    "form",
    {
      class: "move",
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          await api(`/messages/${encodeURIComponent(message.id)}/move`, { method: "POST", json: { folder: select.value } });
          list.removeEnvelope(message.id);
          go(`#/m/${message.mailbox_id}`);
        } catch (error) {
          report(error);
        }
      },
    },
    h("label", { for: "move-folder" }, t("folder")),
    select,
    h("button", { type: "submit" }, t("move_to")),
  );
  button.replaceWith(form);
  select.focus();
}

function receipt(message) {
  if (!message.mdn_requested) return null;
  const button = h("button", {
    type: "button",
    onclick: async () => {
      try {
        await api(`/messages/${encodeURIComponent(message.id)}/read-receipt`, { method: "POST" });
        notify(t("receipt_sent"));
        button.disabled = true;
      } catch (error) {
        report(error);
      }
    },
  }, t("send_receipt"));
  return h("p", { class: "receipt" }, t("receipt_requested"), " ", button);
}

function render(element, message, focusAfter) {
  const people = (list) => (list || []).map((p) => (p.name ? `${p.name} <${p.address}>` : p.address)).join(", ");
  const focusIndex = focusAfter ? [...element.querySelectorAll(".toolbar > *")].indexOf(focusAfter) : -1;
  replace(
    element,
    h(
      "article",
      { class: "message", "aria-labelledby": "message-subject" },
      h("h2", { id: "message-subject" }, message.subject || t("no_subject")),
      actions(element, message),
      h(
        "dl",
        { class: "headers" },
        h("dt", {}, t("from")), h("dd", {}, people([message.from].filter(Boolean))),
        h("dt", {}, t("to")), h("dd", {}, people(message.to)),
        message.cc?.length ? [h("dt", {}, t("cc")), h("dd", {}, people(message.cc))] : null,
        h("dt", {}, t("date")), h("dd", {}, new Date(message.date).toLocaleString(language() === "en" ? "en-GB" : "fr-FR")),
        message.patient ? [h("dt", {}, t("patient")), h("dd", {}, patientLine(message.patient))] : null,
      ),
      message.urgent ? h("p", { class: "mark urgent" }, t("urgent")) : null,
      receipt(message),
      message.html ? frame(message.html) : h("pre", { class: "text" }, message.text || ""),
      attachments(message),
    ),
  );
  if (focusIndex >= 0) element.querySelectorAll(".toolbar > *")[focusIndex]?.focus();
}

export async function show(element, id) {
  if (shown === id && element.querySelector("article")) return;
  shown = id;
  replace(element, h("p", { class: "placeholder" }, t("loading")));
  let message;
  try {
    message = await load(id);
  } catch (error) {
    replace(element, h("p", { class: "error", role: "alert" }, error instanceof ApiError ? t("error", { detail: error.message }) : t("offline")));
    return;
  }
  if (shown !== id) return;
  render(element, message);
  if (!message.seen && (await patch(message, { seen: true })) && shown === id) render(element, message);
}
