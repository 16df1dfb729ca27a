// What the device keeps, in one IndexedDB database: the session, envelopes (kept fresh by
// GET /sync), the bodies of messages the user opened (wiped at lock), a few settings.
// Sign-out deletes the whole database.
const NAME = "estafette";
export const INBOX = "INBOX"; // the folder lists open on
export const PAGE = 50; // envelopes a list loads at a time
// What a list draws first from the device: a screenful (the window's height at 48 px a
// row; rows are taller), the rest of a page only if the network does not answer. Never
// 0, which getAll() would take for "no limit".
export const screenful = () => Math.min(PAGE, Math.max(10, Math.ceil(innerHeight / 48)));
let opening = null;
// Sign-out closes the store for this page until the next sign-in: a sync or a token
// refresh still on its way back would otherwise re-create the database sign-out deleted,
// with what it carried.
let signedOut = false;

export function openStore() {
  if (signedOut) return Promise.reject(new Error("signed out: nothing is kept on the device"));
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const request = indexedDB.open(NAME, 1);
      request.onupgradeneeded = () => {
        const db = request.result;
        const envelopes = db.createObjectStore("envelopes", { keyPath: "id" });
        envelopes.createIndex("by_folder", ["mailbox_id", "folder", "date", "id"]);
        envelopes.createIndex("by_mailbox", "mailbox_id");
        db.createObjectStore("bodies", { keyPath: "id" });
        db.createObjectStore("meta");
      };
      request.onsuccess = () => {
        // Sign-out deletes the database: let it go, and open afresh next time (the
        // service worker outlives the page's sign-out).
        request.result.onversionchange = () => {
          request.result.close();
          opening = null;
        };
        resolve(request.result);
      };
      request.onerror = () => reject(request.error);
    });
  }
  return opening;
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = tx.onabort = () => reject(tx.error);
  });
}

function result(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export async function getMeta(key) {
  const db = await openStore();
  return result(db.transaction("meta").objectStore("meta").get(key));
}

// Several settings in one transaction (start-up reads them all at once).
export async function getMetas(keys) {
  const db = await openStore();
  const store = db.transaction("meta").objectStore("meta");
  const values = await Promise.all(keys.map((key) => result(store.get(key))));
  return Object.fromEntries(keys.map((key, i) => [key, values[i]]));
}

export async function setMeta(key, value) {
  const db = await openStore();
  const tx = db.transaction("meta", "readwrite");
  tx.objectStore("meta").put(value, key);
  return done(tx);
}

export async function putEnvelopes(envelopes, deletedIds = []) {
  if (!envelopes.length && !deletedIds.length) return;
  const db = await openStore();
  const tx = db.transaction(["envelopes", "bodies"], "readwrite");
  const store = tx.objectStore("envelopes");
  for (const envelope of envelopes) store.put(envelope);
  for (const id of deletedIds) {
    store.delete(id);
    tx.objectStore("bodies").delete(id);
  }
  return done(tx);
}

export async function deleteMailboxes(mailboxIds) {
  const db = await openStore();
  const tx = db.transaction("envelopes", "readwrite");
  const index = tx.objectStore("envelopes").index("by_mailbox");
  for (const id of mailboxIds) {
    index.openKeyCursor(IDBKeyRange.only(id)).onsuccess = (event) => {
      const cursor = event.target.result;
      if (cursor) {
        tx.objectStore("envelopes").delete(cursor.primaryKey);
        cursor.continue();
      }
    };
  }
  return done(tx);
}

export async function clearEnvelopes() {
  const db = await openStore();
  const tx = db.transaction("envelopes", "readwrite");
  tx.objectStore("envelopes").clear();
  return done(tx);
}

// Newest first, `limit` envelopes of one folder older than `before` ([date, id]) if given.
// One request where getAll() takes a direction (IndexedDB 3: where getAllRecords exists);
// elsewhere three whatever the limit, not one a row (a cursor's continue() costs a task
// each, which a phone's CPU feels at start-up): a key cursor jumps from the newest to the
// limit-th newest in one advance(), then one getAll() reads from there up, oldest first.
export async function listEnvelopes(mailboxId, folder, limit, before = null) {
  const db = await openStore();
  const lowest = [mailboxId, folder, ""];
  const upper = before ? [mailboxId, folder, ...before] : [mailboxId, folder, "\uffff"];
  const open = Boolean(before);
  const index = db.transaction("envelopes").objectStore("envelopes").index("by_folder");
  if (typeof index.getAllRecords === "function") {
    const query = IDBKeyRange.bound(lowest, upper, false, open);
    return result(index.getAll({ query, count: limit, direction: "prev" }));
  }
  const floor = await new Promise((resolve, reject) => {
    const request = index.openKeyCursor(IDBKeyRange.bound(lowest, upper, false, open), "prev");
    let jumped = false;
    request.onsuccess = () => {
      const cursor = request.result;
      if (!cursor) resolve(lowest); // fewer than `limit`: all of them
      else if (jumped || limit <= 1) resolve(cursor.key);
      else {
        jumped = true;
        cursor.advance(limit - 1);
      }
    };
    request.onerror = () => reject(request.error);
  });
  const found = await result(index.getAll(IDBKeyRange.bound(floor, upper, false, open), limit));
  return found.reverse();
}

// What start-up reads, in one transaction.
export const START_KEYS = ["session", "locked", "idle_minutes", "language", "mailboxes"];

// A warm start reads what its first screen needs at once (early.js, the first module to
// run), while the rest of the app is still being fetched and compiled: its settings, and
// beside them the list it opens on. `readAhead` starts those reads (once a page load);
// `startMetas` and `firstEnvelopes` take them (once each).
let ahead = null;

export function readAhead(mailboxId, folder) {
  if (ahead) return;
  ahead = {
    metas: getMetas(START_KEYS),
    mailboxId,
    folder,
    page: mailboxId ? listEnvelopes(mailboxId, folder, screenful()).catch(() => null) : null,
  };
  ahead.metas.catch(() => {}); // taken by startMetas, which reports a failure
}

export function startMetas() {
  const metas = ahead?.metas;
  if (ahead) ahead.metas = null;
  return metas || getMetas(START_KEYS);
}

export async function firstEnvelopes(mailboxId, folder) {
  const page = ahead?.mailboxId === mailboxId && ahead.folder === folder ? ahead.page : null;
  if (ahead) ahead.page = null;
  return (await page) || listEnvelopes(mailboxId, folder, screenful());
}

export async function getEnvelope(id) {
  const db = await openStore();
  return result(db.transaction("envelopes").objectStore("envelopes").get(id));
}

export async function getBody(id) {
  const db = await openStore();
  return result(db.transaction("bodies").objectStore("bodies").get(id));
}

export async function putBody(message) {
  const db = await openStore();
  const tx = db.transaction("bodies", "readwrite");
  tx.objectStore("bodies").put(message);
  return done(tx);
}

export async function wipeBodies() {
  const db = await openStore();
  const tx = db.transaction("bodies", "readwrite");
  tx.objectStore("bodies").clear();
  return done(tx);
}

// Sign-out: the whole database goes, then every cache of this origin.
// A sign-in opens the store again (after a sign-out in this page).
export function reopenStore() {
  signedOut = false;
}

export async function wipeEverything() {
  signedOut = true;
  ahead = null;
  if (opening) {
    const db = await opening.catch(() => null);
    if (db) db.close();
    opening = null;
  }
  await new Promise((resolve) => {
    const request = indexedDB.deleteDatabase(NAME);
    request.onsuccess = request.onerror = () => resolve();
    // Blocked while another tab or the service worker has it open: each closes it on the
    // versionchange event and the deletion then completes. Sign-out waits for that, not
    // for ever.
    request.onblocked = () => setTimeout(resolve, 5000);
  });
  if (typeof caches !== "undefined") {
    for (const key of await caches.keys()) await caches.delete(key);
  }
}
