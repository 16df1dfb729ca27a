// The API contract (API.md), and nothing else: one fetch wrapper, problem+json as ApiError,
// the access token renewed once with the refresh token when it has expired.
import { getMeta, setMeta } from "./store.js";

const BASE = "/api/v1";
let session = null;
let onSignedOut = () => {};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.code = problem.code || "";
  }
}

export class Offline extends Error {}

export async function loadSession(stored) {
  session = (stored === undefined ? await getMeta("session") : stored) || null;
  return session;
}

export async function saveSession(value) {
  session = value;
  await setMeta("session", value);
}

export function currentSession() {
  return session;
}

export function forgetSession() {
  session = null;
}

export function whenSignedOut(callback) {
  onSignedOut = callback;
}

async function send(path, { method = "GET", json, form, token, raw = false } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  let response;
  try {
    response = await fetch(BASE + path, { method, headers, body, cache: "no-store" });
  } catch (error) {
    throw new Offline(String(error));
  }
  if (response.ok) {
    if (raw) return response;
    if (response.status === 204 || response.status === 202 && !response.headers.get("content-type")) {
      return null;
    }
    return response.json();
  }
  let problem = {};
  try {
    problem = await response.json();
  } catch {
    problem = { title: response.statusText };
  }
  throw new ApiError(response.status, problem);
}

// A call with no session yet (sign-in steps take the mfa token explicitly).
export function anonymous(path, options = {}) {
  return send(path, options);
}

let refreshing = null;

async function refresh() {
  if (!refreshing) {
    const refreshed = session;
    refreshing = send("/auth/refresh", { method: "POST", token: refreshed.refresh_token })
      // Signed out (or in again) meanwhile: the answer belongs to a session that is gone.
      .then((pair) => (session === refreshed ? saveSession({ ...refreshed, ...pair }) : undefined))
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

const notSignedIn = () => new ApiError(401, { code: "not_signed_in", title: "Not signed in" });

export async function api(path, options = {}) {
  if (!session) throw notSignedIn();
  try {
    return await send(path, { ...options, token: session.access_token });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    try {
      await refresh();
    } catch (failure) {
      if (failure instanceof ApiError) onSignedOut();
      throw failure;
    }
    if (!session) throw notSignedIn();
    return send(path, { ...options, token: session.access_token });
  }
}
