// The first module to run: index.html loads it as an async script, so that it runs as soon
// as it and store.js are here, while the rest of the app is still being fetched and
// compiled. It starts the IndexedDB reads a warm start draws its first screen from (the
// settings, and the list the page opens on); main.js takes them. main.js imports it too:
// the same module, run once.
import { INBOX, readAhead } from "./store.js";

export function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "m" && parts[1]) {
    return { view: parts[2] ? "message" : "list", mailboxId: parts[1], messageId: parts[2] || null };
  }
  if (parts[0] === "compose") return { view: "compose", replyTo: parts[1] === "reply" ? parts[2] : null };
  if (parts[0] === "settings") return { view: "settings" };
  return { view: "mailboxes" };
}

readAhead(parseRoute().mailboxId || null, INBOX);
