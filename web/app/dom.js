// A tiny element builder: h("button", {onclick, class: "x"}, "text", child). No innerHTML.
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (name in element && !name.includes("-") && name !== "list" && name !== "form") {
      element[name] = value;
    } else element.setAttribute(name, value === true ? "" : value);
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export function field(label, input, help) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const helpId = help ? `${id}-help` : null;
  if (helpId) input.setAttribute("aria-describedby", helpId);
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    input,
    help ? h("small", { id: helpId }, help) : null,
  );
}

// Intl formatters are costly to build: one per language and shape, built once.
const formatters = new Map();

function formatter(lang, shape) {
  const key = `${lang}:${shape}`;
  if (!formatters.has(key)) {
    const options = {
      time: { hour: "2-digit", minute: "2-digit" },
      day: { day: "numeric", month: "short" },
      year: { day: "numeric", month: "short", year: "numeric" },
    }[shape];
    formatters.set(key, new Intl.DateTimeFormat(lang === "en" ? "en-GB" : "fr-FR", options));
  }
  return formatters.get(key);
}

export function formatDate(value, lang) {
  const date = new Date(value);
  const today = new Date();
  const shape = date.toDateString() === today.toDateString()
    ? "time"
    : date.getFullYear() === today.getFullYear() ? "day" : "year";
  return formatter(lang, shape).format(date);
}

export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} o`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} Ko`;
  return `${(bytes / 1024 / 1024).toFixed(1)} Mo`;
}
