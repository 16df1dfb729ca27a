// Settings: devices (revoke, last push status), Web Push on this device, quiet hours and
// on-call (GET/PUT /me/notifications), the idle lock delay, the language, sign-out.
import { api, currentSession } from "./api.js";
import { field, h, replace } from "./dom.js";
import { CATALOGUE, language, setLanguage, t } from "./i18n.js";
import { app, notify, report, setIdleMinutes, signOut } from "./main.js";
import * as store from "./store.js";

function devicesSection(devices, reload) {
  const mine = currentSession()?.device_id;
  return h(
    "section",
    { "aria-labelledby": "devices-title" },
    h("h3", { id: "devices-title" }, t("devices")),
    h(
      "ul",
      { class: "devices" },
      devices.map((d) =>
        h(
          "li",
          {},
          h("strong", {}, d.name),
          ` (${d.platform})`,
          d.id === mine || d.current ? h("em", {}, ` — ${t("this_device")}`) : null,
          h("div", { class: "meta" }, d.last_push_status ? t("last_push", { status: d.last_push_status }) : t("never_pushed")),
          d.id === mine
            ? null
            : h("button", {
                type: "button",
                class: "danger",
                onclick: async () => {
                  try {
                    await api(`/devices/${encodeURIComponent(d.id)}`, { method: "DELETE" });
                    reload();
                  } catch (error) {
                    report(error);
                  }
                },
              }, t("revoke", { name: d.name })),
        ),
      ),
    ),
  );
}

function pushSection() {
  const status = h("p", { role: "status" });
  return h(
    "section",
    { "aria-labelledby": "push-title" },
    h("h3", { id: "push-title" }, t("notifications")),
    h("button", {
      type: "button",
      onclick: async () => {
        const { subscribe } = await import("./push.js");
        status.textContent = t(await subscribe());
      },
    }, t("enable_push")),
    status,
  );
}

function quietSection(current) {
  const quiet = current.quiet_hours;
  const enabled = h("input", { type: "checkbox", id: "quiet-on", checked: Boolean(quiet) });
  const start = h("input", { type: "time", value: quiet?.start || "22:00" });
  const end = h("input", { type: "time", value: quiet?.end || "07:00" });
  const zone = h("input", { value: quiet?.timezone || Intl.DateTimeFormat().resolvedOptions().timeZone || "Europe/Paris" });
  const onCall = h("input", { type: "checkbox", id: "on-call", checked: Boolean(current.on_call) });
  return h(
    "form",
    {
      "aria-labelledby": "quiet-title",
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          await api("/me/notifications", {
            method: "PUT",
            json: {
              quiet_hours: enabled.checked ? { start: start.value, end: end.value, timezone: zone.value } : null,
              on_call: onCall.checked,
            },
          });
          notify(t("saved"));
        } catch (error) {
          report(error);
        }
      },
    },
    h("h3", { id: "quiet-title" }, t("quiet_hours")),
    h("div", { class: "check" }, enabled, h("label", { for: "quiet-on" }, t("quiet_enabled"))),
    h("div", { class: "row-fields" }, field(t("quiet_start"), start), field(t("quiet_end"), end)),
    field(t("timezone"), zone),
    h("div", { class: "check" }, onCall, h("label", { for: "on-call" }, t("on_call"))),
    h("button", { type: "submit" }, t("save")),
  );
}

function deviceSection() {
  const idle = h(
    "select",
    { onchange: () => setIdleMinutes(Number(idle.value)) },
    [1, 2, 5, 10, 15].map((n) => h("option", { value: n, selected: n === app.idleMinutes }, t("minutes", { n }))),
  );
  const lang = h(
    "select",
    {
      onchange: async () => {
        setLanguage(lang.value);
        await store.setMeta("language", lang.value);
        location.reload();
      },
    },
    Object.keys(CATALOGUE).map((code) => h("option", { value: code, selected: code === language() }, code === "fr" ? "Français" : "English")),
  );
  return h("section", {}, field(t("idle_lock"), idle), field(t("language"), lang));
}

export async function settings(element) {
  const reload = () => settings(element);
  let devices = [];
  let notifications = { quiet_hours: null, on_call: false };
  try {
    [devices, notifications] = await Promise.all([api("/devices"), api("/me/notifications")]);
  } catch (error) {
    report(error);
  }
  replace(
    element,
    h(
      "div",
      { class: "settings" },
      h("h2", {}, t("settings")),
      devicesSection(devices, reload),
      pushSection(),
      quietSection(notifications),
      deviceSection(),
      h("button", { type: "button", class: "danger", onclick: () => signOut() }, t("sign_out")),
    ),
  );
}
