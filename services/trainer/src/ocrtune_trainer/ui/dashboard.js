// The fine-tune dashboard: start a job (dataset URI or uploaded file, recipe defaults editable),
// follow one live (state, progress, ETA, loss curve, CER before/after, errors), list jobs and adapters.
// (One file over ~350 lines on purpose: static files served as they are, with no build step a
// user must run; what both pages share is in ocrtune_shared/console_assets.)
import {
  ApiError,
  call,
  describeError,
  el,
  formatBytes,
  formatDuration,
  formatPercent,
  keyBox,
  notice,
  shortModel,
  streamEvents,
  upload,
} from "./common/api.js";
import { barChart, lineChart } from "./common/charts.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const PHASES = {
  validating: "checking the data",
  evaluating_base: "measuring the base model's CER",
  training: "training",
  evaluating_adapter: "measuring the adapter's CER",
  publishing: "publishing the adapter",
};
const JOBS_REFRESH_MS = 10000;

const state = {
  config: null,
  jobs: [],
  adapters: [],
  uploaded: null, // the DatasetUpload of the chosen file
  selected: null, // the followed job's view: {job, points: Map(step -> loss), cerBefore, cerAfter, log: [], lastEventId}
  stream: null, // AbortController of the followed job's event stream
};

const $ = (id) => document.getElementById(id);

// --- service settings and the recipe form

async function loadConfig() {
  try {
    state.config = await call("../console");
  } catch (err) {
    notice(describeError(err));
    return false;
  }
  notice("");
  const config = state.config;
  $("base-model").textContent = `base model ${shortModel(config.base_model)}`;
  $("base-model").title = config.base_model;
  $("base-model-input").placeholder = `default: ${config.base_model}`;
  const link = $("playground-link");
  if (config.playground_url) {
    link.href = config.playground_url;
    link.classList.remove("disabled");
    link.title = config.playground_url;
  } else {
    link.title = "set OCRTUNE_TRAINER_INFERENCE_URL (or INFERENCE_PUBLIC_URL) to link the playground";
  }
  buildRecipe(config.recipe);
  return true;
}

/** One input per recipe field, filled with the default a job gets; data-path is the field's place in the request. */
function recipeFields(recipe) {
  const fields = [
    ["prompt", recipe.prompt, true],
    ["eval_fraction", recipe.eval_fraction],
    ["max_eval_samples", recipe.max_eval_samples],
  ];
  for (const [name, value] of Object.entries(recipe.hyperparameters)) {
    fields.push([`hyperparameters.${name}`, value, Array.isArray(value)]);
  }
  return fields;
}

function defaultText(value) {
  if (value === null) return ""; // an optional number left empty (num_train_epochs, eval_steps, ...): sent as null
  return Array.isArray(value) ? value.join(", ") : String(value);
}

function fieldKind(value) {
  return Array.isArray(value) ? "list" : value === null ? "number" : typeof value;
}

function buildRecipe(recipe) {
  const inputs = recipeFields(recipe).map(([path, value, wide]) => {
    const name = path.replace("hyperparameters.", "");
    const kind = fieldKind(value);
    const input = el("input", {
      type: kind === "number" ? "number" : "text",
      step: kind === "number" ? "any" : null,
      value: defaultText(value),
      dataset: { path, kind, default: defaultText(value) },
      "aria-label": name,
    });
    input.addEventListener("input", markChanged);
    return el("label", { class: `field ${wide ? "wide" : ""}` }, name, input);
  });
  $("recipe").replaceChildren(...inputs);
  markChanged();
}

function recipeInputs() {
  return [...$("recipe").querySelectorAll("input[data-path]")];
}

function markChanged() {
  let changed = 0;
  for (const input of recipeInputs()) {
    const isChanged = input.value.trim() !== input.dataset.default;
    input.classList.toggle("changed", isChanged);
    input.closest("label").classList.remove("invalid");
    if (isChanged) changed += 1;
  }
  $("changed-count").textContent = changed ? `${changed} changed` : "none changed";
}

function recipeValues() {
  const body = { hyperparameters: {} };
  for (const input of recipeInputs()) {
    const raw = input.value.trim();
    const { path, kind } = input.dataset;
    // Sent as typed; the service checks every value and names the field it refuses.
    const value =
      kind === "number" ? (raw === "" ? null : Number(raw)) : kind === "list" ? raw.split(",").map((s) => s.trim()).filter(Boolean) : raw;
    const [head, tail] = path.split(".");
    if (tail) body[head][tail] = value;
    else body[head] = value;
  }
  return body;
}

// --- the training data: a file uploaded now, or a URI

function sourceKind() {
  return document.querySelector("input[name=source]:checked").value;
}

function showSource() {
  $("source-upload").hidden = sourceKind() !== "upload";
  $("source-uri").hidden = sourceKind() !== "uri";
}

async function uploadChosenFile() {
  const file = $("dataset-file").files[0];
  state.uploaded = null;
  const status = $("upload-state");
  const bar = document.querySelector(".upload-bar");
  status.classList.remove("error-text");
  if (!file) return;
  const limit = state.config ? state.config.max_dataset_upload_bytes : Infinity;
  if (file.size > limit) {
    status.textContent = `${file.name} is ${formatBytes(file.size)}, above this trainer's upload limit of ${formatBytes(limit)}: put it where the trainer can read it and give its URI.`;
    status.classList.add("error-text");
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  bar.hidden = false;
  status.textContent = `uploading ${file.name} (${formatBytes(file.size)})…`;
  try {
    const done = await upload("../datasets", form, {
      onProgress: (fraction) => {
        bar.firstElementChild.style.width = `${(fraction * 100).toFixed(0)}%`;
      },
    });
    state.uploaded = done;
    const rows = done.rows === null ? done.format.replace("_", " ") : `${done.rows} rows`;
    status.textContent = `✓ ${done.filename} · ${rows} · ${formatBytes(done.bytes)} — stored as ${done.uri}`;
    status.dataset.uri = done.uri;
  } catch (err) {
    status.textContent = describeError(err);
    status.classList.add("error-text");
  } finally {
    bar.hidden = true;
    bar.firstElementChild.style.width = "0";
  }
}

// --- submitting

function showFormError(err) {
  const box = $("form-error");
  box.hidden = !err;
  box.textContent = err ? describeError(err) : "";
  if (err instanceof ApiError && err.where) {
    const input = document.querySelector(`[data-path="${CSS.escape(err.where)}"]`) || document.querySelector(`[name="${CSS.escape(err.where)}"]`);
    if (input) {
      input.closest("label")?.classList.add("invalid");
      input.focus();
    }
  }
}

async function submit(event) {
  event.preventDefault();
  showFormError(null);
  const trainUri = sourceKind() === "upload" ? state.uploaded?.uri : $("train-uri").value.trim();
  if (!trainUri) {
    showFormError(new Error(sourceKind() === "upload" ? "Choose a dataset file to upload first (or give a dataset URI)." : "Give the training data's URI."));
    return;
  }
  const body = { adapter_name: $("adapter-name").value.trim(), train: { uri: trainUri }, ...recipeValues() };
  const evalUri = $("eval-uri").value.trim();
  if (evalUri) body.eval = { uri: evalUri };
  const baseModel = $("base-model-input").value.trim();
  if (baseModel) body.base_model = baseModel;
  $("submit").disabled = true;
  try {
    const job = await call("../finetune", { method: "POST", json: body });
    await loadJobs();
    selectJob(job.id);
  } catch (err) {
    showFormError(err);
  } finally {
    $("submit").disabled = false;
  }
}

// --- jobs list

function cerText(result) {
  const before = result.cer_before ? formatPercent(result.cer_before.corpus_cer) : "–";
  const after = result.cer_after ? formatPercent(result.cer_after.corpus_cer) : "–";
  return `${before} → ${after}`;
}

async function loadJobs() {
  try {
    const list = await call("../finetune?limit=20");
    state.jobs = list.jobs;
  } catch (err) {
    $("job-rows").replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "muted wrap" }, describeError(err))));
    return;
  }
  const rows = state.jobs.map((job) => {
    const p = job.progress;
    return el(
      "tr",
      {
        class: `selectable ${state.selected && state.selected.job.id === job.id ? "selected" : ""}`,
        dataset: { job: job.id },
        onclick: () => selectJob(job.id),
      },
      el("td", { class: "mono" }, job.request.adapter_name),
      el("td", {}, el("span", { class: `badge ${job.state}` }, job.state)),
      el("td", {}, p.total_steps ? `${p.step}/${p.total_steps}` : "–"),
      el("td", {}, cerText(job.result)),
      el("td", { class: "muted", title: job.created_at }, new Date(job.created_at).toLocaleTimeString()),
    );
  });
  $("job-rows").replaceChildren(
    ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No jobs yet."))]),
  );
}

// --- adapters (the inference service's list, through the trainer)

function playgroundLink(ref) {
  const base = state.config?.playground_url;
  if (!base) return el("span", { class: "muted", title: "no inference URL configured" }, "no playground");
  return el(
    "a",
    { class: "button small", href: `${base}?adapter=${encodeURIComponent(ref)}`, target: "_blank", rel: "noopener", dataset: { try: ref } },
    "Try in playground",
  );
}

async function loadAdapters() {
  try {
    state.adapters = (await call("../adapters")).adapters;
  } catch (err) {
    $("adapter-rows").replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "muted wrap" }, describeError(err))));
    return;
  }
  const rows = state.adapters.map((info) => {
    const ref = `${info.name}@${info.version}`;
    return el(
      "tr",
      { dataset: { adapter: ref }, title: `base model ${info.base_model}; ${info.requests} requests served` },
      el("td", { class: "mono" }, ref, info.latest ? el("span", { class: "muted" }, " latest") : null),
      el("td", {}, el("span", { class: `badge ${info.state}` }, info.state)),
      el("td", {}, info.rank),
      el("td", {}, cerText(info)),
      el("td", {}, playgroundLink(ref)),
    );
  });
  $("adapter-rows").replaceChildren(
    ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No adapters in the store yet."))]),
  );
}

// --- the followed job

async function selectJob(id) {
  if (state.stream) state.stream.abort();
  state.stream = null;
  let job;
  try {
    job = await call(`../finetune/${encodeURIComponent(id)}`);
  } catch (err) {
    $("job-view").replaceChildren(el("p", { class: "error-text" }, describeError(err)));
    return;
  }
  // Drawn from the job's events alone, replayed from its first: a job picked mid-run looks as
  // it would have had it been followed from the start. Its final result is read when it ends.
  state.selected = { job, points: new Map(), evalPoints: new Map(), cerBefore: null, cerAfter: null, log: [], lastEventId: null };
  const url = new URL(location.href);
  url.searchParams.set("job", id);
  history.replaceState(null, "", url);
  for (const row of document.querySelectorAll("#job-rows tr")) row.classList.toggle("selected", row.dataset.job === id);
  renderJob();
  follow(id);
}

/** Replays the job's events from the start, then follows it live until it ends; reconnects after a drop. */
async function follow(id) {
  const controller = new AbortController();
  state.stream = controller;
  for (let attempt = 0; attempt < 20 && !controller.signal.aborted; attempt++) {
    try {
      await streamEvents(`../finetune/${encodeURIComponent(id)}/events`, {
        signal: controller.signal,
        lastEventId: state.selected.lastEventId,
        onEvent: (event) => onJobEvent(id, event),
      });
      break; // the server ends the stream when the job has ended
    } catch (err) {
      if (controller.signal.aborted) return;
      notice(`Lost the job's live events (${describeError(err)}); reconnecting…`, "info");
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
  if (controller.signal.aborted || !state.selected || state.selected.job.id !== id) return;
  notice("");
  // The final word: result, error, published adapter.
  try {
    const job = await call(`../finetune/${encodeURIComponent(id)}`);
    Object.assign(state.selected, { job, cerBefore: job.result.cer_before ?? state.selected.cerBefore, cerAfter: job.result.cer_after ?? state.selected.cerAfter });
    for (const p of job.result.loss_curve) state.selected.points.set(p.step, p.loss);
    for (const p of job.result.eval_loss_curve) state.selected.evalPoints.set(p.step, p.loss);
  } catch (err) {
    notice(describeError(err));
  }
  renderJob();
  loadJobs();
  loadAdapters();
}

function onJobEvent(id, event) {
  const view = state.selected;
  if (!view || view.job.id !== id) return;
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return;
  }
  view.lastEventId = event.id || view.lastEventId;
  if (data.state) view.job.state = data.state;
  if (data.progress) {
    view.job.progress = data.progress;
    if (data.progress.loss !== null && data.progress.step > 0 && data.progress.phase === "training") {
      view.points.set(data.progress.step, data.progress.loss);
    }
    // An evaluation's progress event (eval_steps): the eval loss at that step.
    if (data.progress.eval_loss != null) view.evalPoints.set(data.progress.step, data.progress.eval_loss);
  }
  if (data.cer) {
    // Which model was measured is the phase the job was in (the events replay in order).
    if (view.job.progress.phase === "evaluating_base") view.cerBefore = data.cer;
    else view.cerAfter = data.cer;
  }
  if (data.message) view.log.push(`${new Date(data.time).toLocaleTimeString()}  ${data.message}`);
  renderJob();
  if (data.state) loadJobs();
}

async function cancelJob(id) {
  try {
    await call(`../finetune/${encodeURIComponent(id)}/cancel`, { method: "POST" });
  } catch (err) {
    notice(describeError(err));
  }
}

function renderJob() {
  const view = state.selected;
  if (!view) return;
  const { job } = view;
  const p = job.progress;
  const terminal = TERMINAL.has(job.state);
  const fraction = job.state === "succeeded" ? 1 : p.total_steps ? p.step / p.total_steps : 0;
  const head = el(
    "div",
    { class: "head" },
    el("span", { class: "title" }, job.request.adapter_name),
    el("span", { class: `badge ${job.state}`, id: "job-state" }, job.state),
    el("span", { class: "muted" }, terminal ? "" : PHASES[p.phase] || p.phase || ""),
    el("span", { class: "muted mono", title: "job id" }, job.id),
    terminal ? null : el("button", { type: "button", class: "small", onclick: () => cancelJob(job.id) }, "Cancel"),
  );
  const bar = el("div", { class: `progress ${job.state === "succeeded" ? "done" : job.state === "failed" ? "failed" : ""}`, id: "job-progress" }, el("div"));
  bar.firstElementChild.style.width = `${(fraction * 100).toFixed(1)}%`;
  const facts = el(
    "div",
    { class: "progress-text" },
    el("span", {}, "step ", el("b", {}, p.total_steps ? `${p.step}/${p.total_steps}` : "–")),
    el("span", {}, "loss ", el("b", {}, p.loss === null ? "–" : p.loss.toFixed(4))),
    el("span", {}, "learning rate ", el("b", {}, p.learning_rate === null ? "–" : p.learning_rate.toExponential(2))),
    el("span", {}, "ETA ", el("b", { id: "job-eta" }, terminal ? "–" : formatDuration(p.eta_seconds))),
  );
  if (job.result.runtime_s) facts.append(el("span", {}, "took ", el("b", {}, formatDuration(job.result.runtime_s))));
  if (job.result.train_samples) facts.append(el("span", {}, `${job.result.train_samples} train / ${job.result.eval_samples} eval samples`));

  const series = (map) => [...map.entries()].sort((a, b) => a[0] - b[0]).map(([x, y]) => ({ x, y }));
  const loss = lineChart(series(view.points), {
    xLabel: "step",
    empty: terminal ? "no loss logged" : "waiting for the first step…",
    second: { points: series(view.evalPoints), label: "eval", firstLabel: "train" },
  });
  loss.id = "loss-chart";
  const before = view.cerBefore?.corpus_cer ?? null;
  const after = view.cerAfter?.corpus_cer ?? null;
  const cerChart = barChart(
    [
      { label: "base model", value: before },
      { label: "with adapter", value: after, kind: after !== null && before !== null && after > before ? "worse" : "after" },
    ],
    { max: Math.max(0.1, before ?? 0, after ?? 0), format: (v) => formatPercent(v, 0) },
  );
  cerChart.id = "cer-chart";
  const cerNote = view.cerBefore
    ? `mean per line ${formatPercent(view.cerBefore.mean_cer)} → ${view.cerAfter ? formatPercent(view.cerAfter.mean_cer) : "…"}, ${view.cerBefore.samples} eval samples`
    : "measured before and after training";

  const charts = el(
    "div",
    { class: "charts" },
    el("div", {}, el("h3", {}, view.evalPoints.size ? "Loss: training and eval" : "Training loss"), loss),
    el("div", {}, el("h3", {}, "CER on the eval set (corpus)"), cerChart, el("div", { class: "muted" }, cerNote)),
  );
  const parts = [head, bar, facts, charts];
  if (job.error) {
    parts.push(el("div", { class: "job-error", id: "job-error" }, `Failed: ${job.error.message}${job.error.where ? ` (at ${job.error.where})` : ""}`));
  }
  if (job.result.adapter) {
    parts.push(el("div", { class: "row", id: "job-adapter" }, "Published ", el("b", { class: "mono" }, job.result.adapter), playgroundLink(job.result.adapter)));
  }
  if (view.log.length) parts.push(el("ul", { class: "job-log" }, ...view.log.slice(-30).reverse().map((line) => el("li", { title: line }, line))));
  $("job-view").replaceChildren(...parts);
  $("job-view").dataset.state = job.state;
}

// --- wiring

async function loadAll() {
  if (await loadConfig()) {
    await Promise.all([loadJobs(), loadAdapters()]);
    const wanted = new URLSearchParams(location.search).get("job");
    if (wanted && !state.selected) selectJob(wanted);
  }
}

function init() {
  keyBox($("key-form"), loadAll);
  for (const radio of document.querySelectorAll("input[name=source]")) radio.addEventListener("change", showSource);
  $("dataset-file").addEventListener("change", uploadChosenFile);
  $("new-job").addEventListener("submit", submit);
  $("reset-recipe").addEventListener("click", () => state.config && buildRecipe(state.config.recipe));
  $("reload-jobs").addEventListener("click", loadJobs);
  $("reload-adapters").addEventListener("click", loadAdapters);
  $("adapter-name").addEventListener("input", () => $("adapter-name").closest("label").classList.remove("invalid"));
  setInterval(() => {
    if (!document.hidden && state.config) loadJobs();
  }, JOBS_REFRESH_MS);
  showSource();
  loadAll();
}

init();
