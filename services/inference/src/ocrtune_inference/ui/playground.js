// The OCR playground: one image or PDF read by the base model and any adapters, side by side,
// each text's differences highlighted against the one chosen as the pivot (or a reference text).
import { ApiError, call, describeError, el, formatBytes, formatPercent, keyBox, notice, shortModel } from "./common/api.js";
import { cer, renderDiff } from "./common/textdiff.js";

const BASE = ""; // the value of the base model's checkbox: no X-Adapter header
const REFERENCE = "__reference__";

const state = {
  file: null,
  previewUrl: null,
  adapters: [],
  checked: new Set([BASE]),
  results: [], // {value, label, response, error, pending}
  pivot: null,
  pivotChosen: false,
};

const $ = (id) => document.getElementById(id);

// ?adapter=name or ?adapter=name@3 (repeatable): what "try in the playground" links ask for.
for (const wanted of new URLSearchParams(location.search).getAll("adapter")) {
  if (wanted) state.checked.add(wanted);
}

function labelOf(value) {
  return value === BASE ? "base model" : value;
}

// --- the served model and the adapters

async function loadModel() {
  try {
    const ready = await call("../readyz");
    $("model").textContent = `model ${shortModel(ready.model)}`;
    $("model").title = ready.model;
    return true;
  } catch (err) {
    $("model").textContent = err instanceof ApiError && err.status === 503 ? "engine starting…" : "";
    return false;
  }
}

async function loadAdapters() {
  try {
    const list = await call("../adapters");
    state.adapters = list.adapters;
    notice("");
    renderModelList();
    renderAdapterTable();
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 503) {
      notice("The inference engine is still starting; this page retries by itself.", "info");
      setTimeout(loadAll, 3000);
    } else {
      notice(describeError(err));
    }
    renderModelList();
    $("adapter-rows").replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "muted" }, describeError(err))));
    return false;
  }
}

async function loadAll() {
  await loadModel();
  await loadAdapters();
}

/** The value a wanted name resolves to: "name" is the latest version of name. */
function resolveWanted(value) {
  if (value === BASE || value.includes("@")) return value;
  const latest = state.adapters.find((a) => a.name === value && a.latest);
  return latest ? `${latest.name}@${latest.version}` : value;
}

function renderModelList() {
  state.checked = new Set([...state.checked].map(resolveWanted));
  const values = [BASE, ...state.adapters.filter((a) => a.latest).map((a) => `${a.name}@${a.version}`)];
  for (const value of state.checked) if (!values.includes(value)) values.push(value); // an older version asked for
  const byRef = new Map(state.adapters.map((a) => [`${a.name}@${a.version}`, a]));
  $("models").replaceChildren(
    ...values.map((value) => {
      const info = byRef.get(value);
      const box = el("input", { type: "checkbox", name: "model", value, checked: state.checked.has(value) });
      box.addEventListener("change", () => {
        if (box.checked) state.checked.add(value);
        else state.checked.delete(value);
        updateRunButton();
      });
      const meta = info && info.cer_after ? `CER ${formatPercent(info.cer_after.corpus_cer)}` : "";
      return el("label", {}, box, labelOf(value), meta ? el("span", { class: "meta" }, meta) : null);
    }),
  );
  updateRunButton();
}

function cerCell(info) {
  const before = info.cer_before ? formatPercent(info.cer_before.corpus_cer) : "–";
  const after = info.cer_after ? formatPercent(info.cer_after.corpus_cer) : "–";
  return `${before} → ${after}`;
}

function renderAdapterTable() {
  const rows = state.adapters.map((info) => {
    const ref = `${info.name}@${info.version}`;
    const compare = el("button", { type: "button", class: "small", onclick: () => selectAdapter(ref) }, "Compare");
    return el(
      "tr",
      { dataset: { adapter: ref } },
      el("td", { class: "mono" }, ref),
      el("td", {}, info.latest ? "✓" : ""),
      el("td", {}, el("span", { class: `badge ${info.state}` }, info.state)),
      el("td", { class: "mono", title: info.base_model }, shorten(info.base_model, 42)),
      el("td", {}, info.rank),
      el("td", {}, cerCell(info)),
      el("td", {}, info.requests),
      el("td", {}, compare),
    );
  });
  $("adapter-rows").replaceChildren(
    ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No adapters yet: fine-tune one with the trainer."))]),
  );
}

function shorten(text, length) {
  return text.length > length ? `…${text.slice(text.length - length + 1)}` : text;
}

function selectAdapter(ref) {
  state.checked.add(ref);
  renderModelList();
  window.scrollTo({ top: 0, behavior: "smooth" });
}

// --- the file

function setFile(file) {
  if (!file) return;
  state.file = file;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = null;
  const isImage = file.type.startsWith("image/");
  const preview = $("preview");
  if (isImage) {
    state.previewUrl = URL.createObjectURL(file);
    preview.src = state.previewUrl;
  }
  preview.hidden = !isImage;
  $("drop-text").hidden = true;
  const kind = file.type === "application/pdf" || file.name.toLowerCase().endsWith(".pdf") ? " · PDF: every page is read" : "";
  $("file-name").textContent = `${file.name} · ${formatBytes(file.size)}${kind}`;
  $("file-name").hidden = false;
  updateRunButton();
}

function updateRunButton() {
  $("run").disabled = !state.file || state.checked.size === 0;
}

// --- reading

async function readWith(value, form) {
  const headers = value === BASE ? {} : { "X-Adapter": value };
  const started = performance.now();
  try {
    const response = await call("../ocr", { method: "POST", form, headers });
    return { value, label: labelOf(value), response, roundTripMs: performance.now() - started };
  } catch (err) {
    return { value, label: labelOf(value), error: describeError(err) };
  }
}

async function run() {
  if (!state.file) return;
  const values = [...state.checked];
  // Base first, then adapters in the order they are listed.
  values.sort((a, b) => (a === BASE ? -1 : b === BASE ? 1 : a.localeCompare(b)));
  state.results = values.map((value) => ({ value, label: labelOf(value), pending: true }));
  renderCards();
  $("run").disabled = true;
  $("run").textContent = "Reading…";
  try {
    await Promise.all(
      values.map(async (value, index) => {
        const form = new FormData();
        form.append("file", state.file, state.file.name);
        form.append("max_tokens", $("max-tokens").value || "512");
        form.append("task", $("task").value);
        state.results[index] = await readWith(value, form);
        renderCards();
      }),
    );
  } finally {
    $("run").textContent = "Read";
    updateRunButton();
  }
  loadAdapters(); // their state and request counts changed
}

// Page breaks (form feeds between PDF pages) are shown as blank lines; CER ignores whitespace anyway.
function shownText(response) {
  return response.text.replaceAll("\f", "\n\n");
}

function referenceText() {
  return $("reference").value.trim();
}

function pivotChoices() {
  const choices = [];
  if (referenceText()) choices.push([REFERENCE, "the reference text"]);
  for (const result of state.results) if (result.response) choices.push([result.value, result.label]);
  return choices;
}

function renderPivotSelect() {
  const choices = pivotChoices();
  // Until the user picks one: the reference if typed, else the first in order (the base model when ticked).
  if (!state.pivotChosen || !choices.some(([value]) => value === state.pivot)) {
    state.pivot = choices.length ? choices[0][0] : null;
  }
  $("pivot").replaceChildren(...choices.map(([value, label]) => el("option", { value, selected: value === state.pivot }, label)));
  $("pivot").disabled = choices.length < 2;
}

function pivotText() {
  if (state.pivot === REFERENCE) return referenceText();
  const result = state.results.find((r) => r.value === state.pivot && r.response);
  return result ? shownText(result.response) : null;
}

function renderCards() {
  renderPivotSelect();
  const reference = referenceText();
  const pivot = pivotText();
  const cards = [];
  if (reference) {
    const text = el("pre", { class: "ocr-text" });
    if (state.pivot === REFERENCE || pivot === null) text.textContent = reference;
    else renderDiff(text, pivot, reference);
    cards.push(
      el(
        "article",
        { class: `card reference ${state.pivot === REFERENCE ? "pivot" : ""}`, dataset: { model: "reference" } },
        el("header", {}, el("span", { class: "name" }, "reference text")),
        el("div", { class: "stats" }, `${Array.from(reference).length} characters`),
        text,
      ),
    );
  }
  for (const result of state.results) {
    const isPivot = result.value === state.pivot;
    const card = el("article", {
      class: `card ${isPivot ? "pivot" : ""}`,
      dataset: { model: result.value === BASE ? "base" : result.value, state: result.pending ? "pending" : result.error ? "error" : "done" },
    });
    const header = el("header", {}, el("span", { class: "name" }, result.label));
    if (result.response && result.response.adapter && result.response.adapter !== result.value) {
      header.append(el("span", { class: "muted mono" }, result.response.adapter));
    }
    if (isPivot) header.append(el("span", { class: "badge" }, "pivot"));
    card.append(header);
    if (result.pending) {
      card.append(el("div", { class: "muted" }, "reading…"));
    } else if (result.error) {
      card.append(el("div", { class: "error-text" }, result.error));
    } else {
      const response = result.response;
      const text = shownText(response);
      const stats = el(
        "div",
        { class: "stats" },
        el("span", { class: "latency", title: `round trip in this browser: ${result.roundTripMs.toFixed(0)} ms` }, `${response.latency_ms.toFixed(0)} ms`),
        el("span", { class: "tokens" }, `${response.usage.prompt_tokens} → ${response.usage.completion_tokens} tokens`),
      );
      if (response.pages.length > 1) stats.append(el("span", {}, `${response.pages.length} pages`));
      if (reference) {
        const score = cer(response.text, reference);
        stats.append(el("span", { class: "cer", title: `${score.edits} edits / ${score.referenceChars} reference characters` }, `CER ${formatPercent(score.cer)}`));
      }
      const body = el("pre", { class: "ocr-text" });
      if (isPivot || pivot === null) body.textContent = text;
      else renderDiff(body, pivot, text);
      card.append(stats, body);
      if (!text) card.append(el("span", { class: "muted" }, "(no text: the model ended at once)"));
    }
    cards.push(card);
  }
  $("cards").replaceChildren(...cards);
}

// --- wiring

function init() {
  keyBox($("key-form"), loadAll);
  const drop = $("drop");
  $("file").addEventListener("change", (e) => setFile(e.target.files[0]));
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    setFile(e.dataTransfer.files[0]);
  });
  // A screenshot pasted from the clipboard is the quickest way to try a line.
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (item) setFile(item);
  });
  $("run").addEventListener("click", run);
  $("pivot").addEventListener("change", (e) => {
    state.pivot = e.target.value;
    state.pivotChosen = true;
    renderCards();
  });
  let typing = null;
  $("reference").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(renderCards, 200);
  });
  $("reload-adapters").addEventListener("click", loadAdapters);
  renderModelList();
  loadAll();
}

init();
