// Web Push: this device's browser subscribes with the gateway's VAPID key (GET), then hands
// its subscription to the gateway (PUT /devices/{id}/web-push). Pushes carry no content.
import { api, ApiError, currentSession } from "./api.js";

function keyBytes(base64url) {
  const text = atob(base64url.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (base64url.length % 4)) % 4));
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

// Returns a catalogue key saying how it went.
export async function subscribe() {
  const device = currentSession()?.device_id;
  if (!device || !("PushManager" in window) || !navigator.serviceWorker) return "push_unavailable";
  if ((await Notification.requestPermission()) !== "granted") return "push_refused";
  try {
    const { public_key: key } = await api(`/devices/${encodeURIComponent(device)}/web-push`);
    const registration = await navigator.serviceWorker.ready;
    const subscription =
      (await registration.pushManager.getSubscription()) ||
      (await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) }));
    await api(`/devices/${encodeURIComponent(device)}/web-push`, { method: "PUT", json: subscription.toJSON() });
    return "push_on";
  } catch (error) {
    return error instanceof ApiError ? "push_unavailable" : "push_refused";
  }
}

// At start: keep the gateway's copy of the subscription current, without asking again.
export async function resubscribe() {
  if ("Notification" in window && Notification.permission === "granted") await subscribe();
}

// Encrypted previews (README, "Encrypted push previews"): 32 random bytes go to the gateway
// once, as the sign-in's `device.push_key`; the device keeps them only as a
// non-extractable WebCrypto key in IndexedDB, which the service worker opens previews
// with. When the establishment has previews off, the gateway ignores the key.
export async function newPushKey() {
  const raw = crypto.getRandomValues(new Uint8Array(32));
  const key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["decrypt"]);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", raw));
  const kid = Array.from(digest.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
  const sent = btoa(String.fromCharCode(...raw));
  raw.fill(0);
  return { sent, kept: { key, kid } };
}
