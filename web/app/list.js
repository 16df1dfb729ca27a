// The message list: first paint from IndexedDB, then the API's keyset pages (infinite
// scroll), pull-to-refresh, and the changes GET /sync brings in while it is open.
import { api } from "./api.js";
import { formatDate, h, replace } from "./dom.js";
import { language, t } from "./i18n.js";
import { app, mailbox, report, setOffline, syncNow } from "./main.js";
import * as store from "./store.js";

const { PAGE } = store;
const view = { mailboxId: null, folder: null, items: [], next: null, done: false, loading: false };
let pane = null;
let observer = null;
let markDrawn;
// Settles once the first list shown has its first rows from IndexedDB (start-up waits on
// it).
export const firstDrawn = new Promise((resolve) => (markDrawn = resolve));

export function placeholder(element) {
  view.mailboxId = null;
  replace(element, h("p", { class: "placeholder" }, t("choose_mailbox")));
}

function marks(envelope) {
  return h(
    "span",
    { class: "marks" },
    !envelope.seen ? h("span", { class: "mark unread", title: t("unread") }, h("span", { class: "visually-hidden" }, t("unread"))) : null,
    envelope.urgent ? h("span", { class: "mark urgent" }, t("urgent")) : null,
    envelope.flagged ? h("span", { class: "mark flagged", title: t("flagged") }, "⚑", h("span", { class: "visually-hidden" }, t("flagged"))) : null,
    envelope.has_attachments ? h("span", { class: "mark clip", title: t("attachment") }, "PJ", h("span", { class: "visually-hidden" }, t("attachment"))) : null,
  );
}

function row(envelope) {
  const sender = envelope.from?.name || envelope.from?.address || "";
  return h(
    "li",
    { "data-id": envelope.id },
    h(
      "a",
      {
        class: `row${envelope.seen ? "" : " is-unread"}`,
        href: `#/m/${envelope.mailbox_id}/${envelope.id}`,
        "aria-current": app.route.messageId === envelope.id ? "page" : false,
      },
      h("span", { class: "sender" }, sender),
      h("time", { datetime: envelope.date }, formatDate(envelope.date, language())),
      h("span", { class: "subject" }, envelope.subject || t("no_subject")),
      envelope.patient?.name ? h("span", { class: "patient" }, envelope.patient.name) : null,
      marks(envelope),
    ),
  );
}

function render() {
  if (!pane || !view.mailboxId) return;
  const box = mailbox(view.mailboxId);
  const more = h(
    "button",
    { class: "more", type: "button", hidden: view.done, onclick: () => loadMore() },
    t("load_more"),
  );
  const items = view.items.length
    ? h("ul", { class: "rows", role: "list" }, view.items.map(row))
    : h("p", { class: "placeholder" }, view.loading ? t("loading") : t("no_messages"));
  replace(
    pane,
    h(
      "div",
      { class: "list-head" },
      h("h2", {}, box ? box.display_name || box.address : t("messages")),
      h("button", { type: "button", class: "icon", onclick: () => refresh(), "aria-label": t("refresh") }, "↻"),
    ),
    h("p", { class: "pull", "aria-hidden": "true" }, t("pull_to_refresh")),
    items,
    more,
    view.done && view.items.length ? h("p", { class: "end" }, t("end_of_list")) : null,
  );
  observer?.disconnect();
  if (!view.done) {
    observer = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) loadMore();
    }, { root: pane });
    observer.observe(more);
  }
}

export async function show(element, mailboxId, folder, messageId) {
  // A new pane (the shell rebuilt after an unlock or a sign-in) is drawn afresh.
  const samePane = element === pane;
  if (!samePane) watchPull(element);
  pane = element;
  if (samePane && view.mailboxId === mailboxId && view.folder === folder) {
    for (const link of pane.querySelectorAll("a.row")) {
      const current = link.getAttribute("href").endsWith(`/${messageId}`);
      if (current) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    return;
  }
  Object.assign(view, { mailboxId, folder, items: [], next: null, done: false, loading: true });
  view.items = await store.firstEnvelopes(mailboxId, folder);
  render();
  markDrawn();
  await firstPage();
}

async function firstPage() {
  const asked = view.mailboxId;
  try {
    const page = await api(`/mailboxes/${encodeURIComponent(asked)}/messages?folder=${encodeURIComponent(view.folder)}&limit=${PAGE}`);
    if (view.mailboxId !== asked) return;
    setOffline(false);
    store.putEnvelopes(page.items);
    view.items = page.items;
    view.next = page.next;
    view.done = !page.next;
  } catch (error) {
    report(error);
    // The device's page instead (offline, say): only a screenful of it was drawn first.
    const last = view.items.at(-1);
    if (view.mailboxId === asked && last && view.items.length < PAGE) {
      const older = await store.listEnvelopes(asked, view.folder, PAGE - view.items.length, [last.date, last.id]).catch(() => []);
      if (view.mailboxId === asked) view.items = view.items.concat(older);
    }
    view.done = true;
  }
  view.loading = false;
  render();
}

async function loadMore() {
  if (view.loading || view.done) return;
  view.loading = true;
  const asked = view.mailboxId;
  try {
    if (view.next && !app.offline) {
      const page = await api(`/mailboxes/${encodeURIComponent(asked)}/messages?folder=${encodeURIComponent(view.folder)}&limit=${PAGE}&cursor=${encodeURIComponent(view.next)}`);
      if (view.mailboxId !== asked) return;
      store.putEnvelopes(page.items);
      view.items = view.items.concat(page.items.filter((e) => !view.items.some((i) => i.id === e.id)));
      view.next = page.next;
      view.done = !page.next;
    } else {
      const last = view.items.at(-1);
      const older = last ? await store.listEnvelopes(asked, view.folder, PAGE, [last.date, last.id]) : [];
      view.items = view.items.concat(older);
      view.done = older.length < PAGE;
    }
  } catch (error) {
    report(error);
    view.done = true;
  } finally {
    view.loading = false;
  }
  render();
}

export async function refresh() {
  await syncNow();
  if (!view.mailboxId) return;
  view.loading = true;
  await firstPage();
}

// What GET /sync brought: new or changed envelopes of the open folder, and deletions.
export function applyChanges(upserts, deletedIds) {
  if (!view.mailboxId) return;
  const gone = new Set(deletedIds);
  let changed = view.items.some((e) => gone.has(e.id));
  let items = changed ? view.items.filter((e) => !gone.has(e.id)) : view.items.slice();
  const oldest = items.at(-1);
  for (const envelope of upserts) {
    if (envelope.mailbox_id !== view.mailboxId) continue;
    const at = items.findIndex((e) => e.id === envelope.id);
    if (envelope.folder !== view.folder) {
      if (at >= 0) items.splice(at, 1);
      else continue;
    } else if (at >= 0) items[at] = envelope;
    else if (view.done || !oldest || envelope.date >= oldest.date) items.push(envelope);
    else continue;
    changed = true;
  }
  if (!changed) return;
  items = items.sort((a, b) => (a.date < b.date ? 1 : a.date > b.date ? -1 : 0));
  view.items = items;
  render();
}

export function updateEnvelope(envelope) {
  applyChanges([envelope], []);
  store.putEnvelopes([envelope]);
}

export function removeEnvelope(id) {
  applyChanges([], [id]);
  store.putEnvelopes([], [id]);
}

function watchPull(element) {
  let startY = null;
  element.addEventListener("touchstart", (e) => {
    startY = element.scrollTop === 0 ? e.touches[0].clientY : null;
  }, { passive: true });
  element.addEventListener("touchmove", (e) => {
    if (startY !== null) element.classList.toggle("pulling", e.touches[0].clientY - startY > 60);
  }, { passive: true });
  element.addEventListener("touchend", () => {
    if (element.classList.contains("pulling")) refresh();
    element.classList.remove("pulling");
    startY = null;
  });
}
