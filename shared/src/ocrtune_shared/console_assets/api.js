// Talking to the service that served the page: the API key, JSON calls, the error body, server-sent events.
// Every data call goes to this page's own origin; the key typed by the user rides along as a Bearer token.

const KEY_STORAGE = "ocrtune.apiKey";

// sessionStorage: the key lives as long as the tab, and each service (its own origin) keeps its own.
export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

export function authHeaders(headers = {}) {
  const key = apiKey();
  return key ? { ...headers, Authorization: `Bearer ${key}` } : { ...headers };
}

/** An error the service answered with its ErrorResponse body ({error: {code, message, where}}). */
export class ApiError extends Error {
  constructor(status, code, message, where = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.where = where;
  }
}

async function errorFrom(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && body.error) return new ApiError(response.status, body.error.code, body.error.message, body.error.where);
  } catch {
    // not JSON: a proxy's page, say; its first words still say more than the status alone
  }
  return new ApiError(response.status, `http_${response.status}`, text.slice(0, 300) || response.statusText);
}

/** fetch() with the key; JSON in and out; throws ApiError with the service's own words. */
export async function call(path, { method = "GET", json, form, headers = {}, signal } = {}) {
  const init = { method, headers: authHeaders(headers), signal };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (form !== undefined) {
    init.body = form;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "unreachable", `the service did not answer (${err.message})`);
  }
  if (!response.ok) throw await errorFrom(response);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** A multipart upload with progress (fetch cannot report upload progress; XMLHttpRequest can). */
export function upload(path, form, { onProgress } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    if (onProgress) xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, "unreachable", "the upload was cut off (the service did not answer)"));
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else if (body && body.error) reject(new ApiError(xhr.status, body.error.code, body.error.message, body.error.where));
      else reject(new ApiError(xhr.status, `http_${xhr.status}`, xhr.responseText.slice(0, 300) || xhr.statusText));
    };
    xhr.send(form);
  });
}

/** What went wrong, in words a user can act on. */
export function describeError(err) {
  if (!(err instanceof ApiError)) return String(err && err.message ? err.message : err);
  if (err.status === 401) {
    return `${err.message}. Type this service's API key in the box at the top right.`;
  }
  return err.where ? `${err.message} (at ${err.where})` : err.message;
}

/**
 * Server-sent events over fetch(), because EventSource cannot send the Authorization header.
 * Calls onEvent({type, data, id}) for each event; resolves when the server ends the stream.
 */
export async function streamEvents(path, { onEvent, signal, lastEventId = null }) {
  const headers = authHeaders({ Accept: "text/event-stream" });
  if (lastEventId) headers["Last-Event-ID"] = String(lastEventId);
  const response = await fetch(path, { headers, signal });
  if (!response.ok) throw await errorFrom(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { type: "message", data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    for (;;) {
      const match = /\r\n|\n|\r/.exec(buffer);
      // A lone \r at the end may be the first half of a \r\n still in flight.
      if (!match || (match[0] === "\r" && match.index === buffer.length - 1)) break;
      const line = buffer.slice(0, match.index);
      buffer = buffer.slice(match.index + match[0].length);
      if (line === "") {
        if (event.data.length) onEvent({ type: event.type, data: event.data.join("\n"), id: event.id });
        event = { type: "message", data: [], id: null };
        continue;
      }
      if (line.startsWith(":")) continue; // a comment: the server's keep-alive ping
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event.type = text;
      else if (field === "data") event.data.push(text);
      else if (field === "id") event.id = text;
    }
  }
}

/** The API-key box in the header: shows whether a key is set, stores a new one, calls onChange. */
export function keyBox(form, onChange) {
  const input = form.querySelector("input");
  const state = form.querySelector(".key-state");
  const show = () => {
    input.value = "";
    input.placeholder = apiKey() ? "•••• (type to replace)" : "none";
    if (state) state.textContent = apiKey() ? "key set" : "";
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    setApiKey(input.value.trim());
    show();
    onChange();
  });
  show();
}

// --- small DOM and formatting helpers both pages use

/** el("div", {class: "x", dataset: {...}, onclick}, child, "text", ...): text is always text, never HTML. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A model's name for the header: a local path shortened to its last two folders (the full name in the title). */
export function shortModel(name) {
  const parts = name.split("/").filter(Boolean);
  return name.startsWith("/") && parts.length > 2 ? `…/${parts.slice(-2).join("/")}` : name;
}

export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

export function formatPercent(fraction, digits = 1) {
  return fraction === null || fraction === undefined ? "–" : `${(fraction * 100).toFixed(digits)}%`;
}

/** The notice line under the header: a message in words, or hidden. */
export function notice(text, kind = "error") {
  const box = document.getElementById("notice");
  if (!box) return;
  box.textContent = text || "";
  box.className = `notice ${kind}`;
  box.hidden = !text;
}
