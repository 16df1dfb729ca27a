// The app: routes (#/m/<mailbox>[/<message>], #/compose, #/settings), the panes, the sync
// loop (GET /sync?since=), the idle lock and sign-out.
import { api, ApiError, currentSession, forgetSession, loadSession, Offline, whenSignedOut } from "./api.js";
import { h, replace } from "./dom.js";
import { parseRoute } from "./early.js";
import { language, setLanguage, t } from "./i18n.js";
import * as list from "./list.js";
import * as store from "./store.js";

// Not needed to show a list from the device: fetched when first used, so that a warm
// start parses only what the first screen runs.
let readerModule = null;
const loadReader = () => (readerModule ||= import("./reader.js"));
async function signIn(...args) {
  const { signIn: show } = await import("./signin.js");
  show(...args);
}

const FOLDER = store.INBOX;
const SYNC_SECONDS = 5;
const root = document.getElementById("app");

export const app = {
  mailboxes: [],
  route: { view: "mailboxes" },
  offline: false,
  locked: false,
  idleMinutes: 5,
  syncing: null,
};

const ui = {};

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

export function setOffline(offline) {
  app.offline = offline;
  ui.banner.textContent = offline ? t("offline") : "";
  ui.banner.hidden = !offline;
}

export function notify(text) {
  ui.toast.textContent = text;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => (ui.toast.textContent = ""), 6000);
}

export function report(error) {
  if (error instanceof Offline) setOffline(true);
  else notify(t("error", { detail: error instanceof ApiError ? error.message : String(error) }));
}

function shell() {
  ui.banner = h("p", { class: "banner", role: "status", hidden: true });
  ui.toast = h("p", { class: "toast", role: "status", "aria-live": "polite" });
  ui.back = h("button", { class: "icon back", type: "button", onclick: back, "aria-label": t("back") }, "‹");
  ui.title = h("h1", {}, t("app_name"));
  ui.mailboxes = h("nav", { id: "pane-mailboxes", class: "pane", "aria-label": t("mailboxes") });
  ui.list = h("section", { id: "pane-list", class: "pane", "aria-label": t("message_list") });
  ui.main = h("main", { id: "main", class: "pane", tabindex: "-1" });
  ui.panes = h("div", { class: "panes" }, ui.mailboxes, ui.list, ui.main);
  replace(
    root,
    h("a", { class: "skip", href: "#main", onclick: (e) => { e.preventDefault(); ui.main.focus(); } }, t("skip_to_content")),
    h(
      "header",
      { class: "top" },
      ui.back,
      ui.title,
      h(
        "nav",
        { class: "actions", "aria-label": t("main_nav") },
        h("a", { class: "button", href: "#/compose" }, t("compose")),
        h("a", { class: "button", href: "#/settings" }, t("settings")),
      ),
    ),
    ui.banner,
    ui.panes,
    ui.toast,
  );
}

function back() {
  const r = app.route;
  if (r.view === "message") go(`#/m/${r.mailboxId}`);
  else if (r.view === "list") go("#/");
  else history.length > 1 ? history.back() : go("#/");
}

function syncWords(mailbox) {
  const { state, detail } = mailbox.sync || {};
  if (state === "ok") return t("sync_ok");
  if (state === "connecting") return t("sync_connecting");
  if (/auth|credential|sign|password|login/i.test(detail || "")) return t("sync_needs_sign_in");
  return t("sync_error");
}

function renderMailboxes() {
  const own = app.mailboxes.filter((m) => m.role === "owner");
  const delegated = app.mailboxes.filter((m) => m.role !== "owner");
  const group = (title, mailboxes) =>
    mailboxes.length
      ? [
          h("h2", {}, title),
          h(
            "ul",
            { class: "mailboxes" },
            mailboxes.map((m) =>
              h(
                "li",
                {},
                h(
                  "a",
                  {
                    class: "mailbox",
                    href: `#/m/${m.id}`,
                    "aria-current": app.route.mailboxId === m.id ? "page" : false,
                  },
                  h("span", { class: "name" }, m.display_name || m.address),
                  h("span", { class: "address" }, m.address),
                  h("span", { class: `sync sync-${m.sync?.state || "unknown"}` }, syncWords(m)),
                  m.unread
                    ? h("span", { class: "badge", "aria-label": t("unread_count", { n: m.unread }) }, String(m.unread))
                    : null,
                ),
              ),
            ),
          ),
        ]
      : [];
  replace(ui.mailboxes, h("h2", { class: "visually-hidden" }, t("mailboxes")), group(t("own_mailboxes"), own), group(t("delegated_mailboxes"), delegated));
}

export async function refreshMailboxes() {
  try {
    app.mailboxes = await api("/mailboxes");
    setOffline(false);
    await store.setMeta("mailboxes", app.mailboxes);
  } catch (error) {
    report(error);
    app.mailboxes = (await store.getMeta("mailboxes")) || app.mailboxes;
  }
  renderMailboxes();
}

export function mailbox(id) {
  return app.mailboxes.find((m) => m.id === id);
}

// Envelopes into IndexedDB, from GET /sync?since=; the open list takes what concerns it.
export async function syncNow() {
  if (app.syncing) return app.syncing;
  app.syncing = (async () => {
    let since = await store.getMeta("sync_state");
    let changed = false;
    for (let page = 0; page < 500; page++) {
      let answer;
      try {
        answer = await api(`/sync${since ? `?since=${encodeURIComponent(since)}` : ""}`);
      } catch (error) {
        if (error instanceof ApiError && error.code === "cannot_calculate_changes") {
          await store.clearEnvelopes();
          since = null;
          continue;
        }
        throw error;
      }
      setOffline(false);
      const upserts = answer.changes.filter((c) => c.op === "upsert").map((c) => c.message);
      const deletes = answer.changes.filter((c) => c.op === "delete").map((c) => c.message.id);
      await store.putEnvelopes(upserts, deletes);
      if (answer.removed_mailboxes?.length) await store.deleteMailboxes(answer.removed_mailboxes);
      since = answer.state;
      await store.setMeta("sync_state", since);
      if (answer.changes.length) {
        changed = true;
        list.applyChanges(upserts, deletes);
      }
      if (!answer.more) break;
    }
    if (changed) await refreshMailboxes();
  })()
    .catch(report)
    .finally(() => {
      app.syncing = null;
    });
  return app.syncing;
}

async function route() {
  if (app.locked || !currentSession()) return;
  const r = (app.route = parseRoute());
  document.body.dataset.view = r.view;
  ui.back.hidden = r.view === "mailboxes";
  renderMailboxes();
  if (r.mailboxId) {
    await list.show(ui.list, r.mailboxId, FOLDER, r.messageId);
  } else if (r.view === "mailboxes") {
    list.placeholder(ui.list);
  }
  if (r.view === "message") await (await loadReader()).show(ui.main, r.messageId);
  else if (r.view === "compose") {
    const { compose } = await import("./compose.js");
    await compose(ui.main, r.replyTo);
  } else if (r.view === "settings") {
    const { settings } = await import("./settings.js");
    await settings(ui.main);
  } else replace(ui.main, h("p", { class: "placeholder" }, r.view === "list" ? t("choose_message") : t("choose_mailbox")));
  if (r.view !== "mailboxes" && r.view !== "list") ui.main.focus({ preventScroll: true });
}

// -- idle lock -----------------------------------------------------------------------
let lastActivity = Date.now();

function watchIdle() {
  for (const type of ["pointerdown", "keydown", "wheel", "touchstart"]) {
    addEventListener(type, () => (lastActivity = Date.now()), { passive: true, capture: true });
  }
  setInterval(() => {
    if (!app.locked && currentSession() && Date.now() - lastActivity > app.idleMinutes * 60000) lock();
  }, 1000);
}

export async function lock() {
  app.locked = true;
  if (ui.main && readerModule) (await readerModule).forget(ui.main);
  await store.wipeBodies();
  const { lockScreen } = await import("./lock.js");
  lockScreen(root, () => {
    app.locked = false;
    lastActivity = Date.now();
    start();
  });
}

export function setIdleMinutes(minutes) {
  app.idleMinutes = minutes;
  store.setMeta("idle_minutes", minutes);
}

// -- sign-out ---------------------------------------------------------------------------
export async function signOut() {
  try {
    await api("/auth/logout", { method: "POST" });
  } catch {
    // Offline or already revoked: the local wipe below happens regardless.
  }
  await wipeDevice();
}

async function wipeDevice() {
  try {
    const registration = await navigator.serviceWorker?.getRegistration();
    const subscription = await registration?.pushManager?.getSubscription();
    await subscription?.unsubscribe();
  } catch {
    // No push subscription to drop.
  }
  forgetSession();
  await store.wipeEverything();
  localStorage.clear();
  sessionStorage.clear();
  app.mailboxes = [];
  app.locked = false;
  history.replaceState(null, "", "/");
  signIn(root, () => start());
}

// -- start ------------------------------------------------------------------------------
let timers = false;

async function start(kept) {
  const meta = kept || (await store.getMetas(["idle_minutes", "language", "mailboxes"]));
  app.idleMinutes = meta.idle_minutes || app.idleMinutes;
  setLanguage(meta.language || language());
  app.mailboxes = meta.mailboxes || [];
  shell();
  lastActivity = Date.now();
  const first = route();
  // The list the page opens on is drawn from IndexedDB first: the mailboxes' refresh (a
  // network answer and a re-render) waits for it rather than compete with its rows.
  if (app.route?.mailboxId) await Promise.race([list.firstDrawn, first]).catch(() => {});
  await refreshMailboxes();
  await first;
  // The shell's refresh (the service worker's network fetches) waits until the first
  // screen has the API's answers too: a cold start's calls do not queue behind it.
  navigator.serviceWorker?.controller?.postMessage({ type: "cache-shell" });
  syncNow();
  import("./push.js").then((push) => push.resubscribe()).catch(() => {});
  if (!timers) {
    timers = true;
    setInterval(() => {
      if (currentSession() && !app.locked && document.visibilityState === "visible") syncNow();
    }, SYNC_SECONDS * 1000);
    addEventListener("online", () => syncNow());
    addEventListener("offline", () => setOffline(true));
  }
}

async function boot() {
  addEventListener("hashchange", route);
  whenSignedOut(wipeDevice);
  if (navigator.serviceWorker) {
    navigator.serviceWorker.register("/sw.js", { scope: "/", type: "module" }).catch(() => {});
    navigator.serviceWorker.addEventListener("message", (event) => {
      if (event.data?.type === "push" && currentSession() && !app.locked) syncNow();
      // A tapped notification: to its mailbox (the route waits behind a lock).
      if (event.data?.type === "open" && typeof event.data.url === "string") {
        const url = new URL(event.data.url, location.origin);
        if (url.origin === location.origin) go(url.hash || "#/");
      }
    });
  }
  watchIdle();
  // One read of everything start-up needs, and beside it the list the page opens on
  // (started by early.js): the warm start shows it from IndexedDB before any network call.
  const kept = await store.startMetas();
  setLanguage(kept.language || "fr"); // French first; English when chosen in the settings
  if (await loadSession(kept.session)) {
    if (kept.locked) return lock();
    start(kept);
  } else signIn(root, () => start());
}

boot();
