// The service worker: the app shell for offline use, and content-free Web Push.
// API answers are never cached (they carry health data, and say Cache-Control: no-store).
import { setLanguage, t } from "/app/i18n.js";
import { getMetas } from "/app/store.js";

const SHELL_CACHE = "estafette-shell-v1";
const SHELL = [
  "/",
  "/manifest.webmanifest",
  "/app/main.js",
  "/app/early.js",
  "/app/api.js",
  "/app/dom.js",
  "/app/i18n.js",
  "/app/list.js",
  "/app/reader.js",
  "/app/signin.js",
  "/app/store.js",
  "/app/compose.js",
  "/app/settings.js",
  "/app/lock.js",
  "/app/push.js",
  "/app/styles.css",
  "/app/icon.svg",
];

setLanguage("fr"); // French first, like the app

async function cacheShell() {
  const cache = await caches.open(SHELL_CACHE);
  await cache.addAll(SHELL);
}

self.addEventListener("install", (event) => {
  event.waitUntil(cacheShell().then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== SHELL_CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

// The cached shell, refreshed from the network for the next start. A file is stored again
// only when it changed (its ETag): a stored script keeps the compiled code Chromium
// attaches to it, which a warm start would otherwise redo every time.
async function refreshShell() {
  const cache = await caches.open(SHELL_CACHE);
  await Promise.all(
    SHELL.map(async (key) => {
      const [cached, response] = await Promise.all([cache.match(key), fetch(key)]);
      const etag = response.headers.get("ETag");
      if (response.ok && !(cached && etag && cached.headers.get("ETag") === etag)) {
        await cache.put(key, response);
      }
    }),
  );
}

// The app asks at every start, once its first screen is drawn (not while it is being
// drawn: a phone's CPU and the gateway are busy enough then): the shell is refreshed, or
// cached afresh when sign-out deleted the caches.
self.addEventListener("message", (event) => {
  if (event.data?.type !== "cache-shell") return;
  event.waitUntil(
    caches.has(SHELL_CACHE).then((kept) => (kept ? refreshShell() : cacheShell())).catch(() => {}),
  );
});

// The shell from the cache at once (it is the same for everyone); from the network while
// nothing is cached. Offline (the basement case) the cached copy is all there is.
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/api/")) return;
  const key = url.pathname;
  if (!SHELL.includes(key)) return; // /healthz, /metrics, /api/...: straight to the network
  event.respondWith(
    caches.match(key).then((cached) => cached || fetch(event.request)).catch(() => Response.error()),
  );
});

// An encrypted preview (README, "Encrypted push previews"), opened here with the key this
// device registered at sign-in (a non-extractable CryptoKey the page put in IndexedDB):
// "sender — subject", or null for the generic text (no preview, another key, a failed
// tag, a locked session, or signed out).
async function openPreview(data) {
  if (typeof data.enc !== "string" || typeof data.kid !== "string" || !data.mailbox) return null;
  try {
    if (!(await indexedDB.databases()).some((d) => d.name === "estafette")) return null;
    const { push_key: kept, locked } = await getMetas(["push_key", "locked"]);
    if (!kept?.key || kept.kid !== data.kid || locked) return null;
    const raw = Uint8Array.from(atob(data.enc), (c) => c.charCodeAt(0));
    const plain = await crypto.subtle.decrypt(
      {
        name: "AES-GCM",
        iv: raw.slice(0, 12),
        additionalData: new TextEncoder().encode(`estafette-preview-v1|${data.mailbox}`),
      },
      kept.key,
      raw.slice(12),
    );
    const { from, subject } = JSON.parse(new TextDecoder().decode(plain));
    const words = [from, subject].filter((w) => typeof w === "string" && w);
    return words.length ? words.join(" — ") : null;
  } catch {
    return null;
  }
}

// The push says only which mailbox has new mail (backend/push/payloads.py), and, with
// previews on, carries this device's sealed preview.
self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = {};
  }
  const mailbox = typeof data.mailbox === "string" ? data.mailbox : "";
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      for (const client of windows) client.postMessage({ type: "push", kind: data.type, mailbox });
      if (data.type === "mail.read") return;
      const preview = data.type === "mail.new" ? await openPreview(data) : null;
      await self.registration.showNotification(t("new_secure_message"), {
        body: preview || "",
        tag: mailbox || "estafette",
        renotify: true,
        icon: "/app/icon.svg",
        data: { mailbox },
      });
    })(),
  );
});

// A tap opens that mailbox: in the app's open window if there is one, else a new one.
// focus() needs the tap's user activation; the window is sent to the mailbox either way.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const mailbox = event.notification.data?.mailbox;
  const target = new URL(mailbox ? `/#/m/${encodeURIComponent(mailbox)}` : "/", self.location.origin).href;
  const opened = (async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const client = windows.find((c) => new URL(c.url).origin === self.location.origin);
    if (!client) return self.clients.openWindow(target);
    await client.focus().catch(() => undefined);
    if (client.url !== target) client.postMessage({ type: "open", url: target });
    return client;
  })();
  try {
    event.waitUntil(opened);
  } catch {
    // An event not dispatched by the browser (a test's) cannot be extended; it still runs.
  }
});
