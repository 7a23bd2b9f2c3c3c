// Batplots page: the model line at the top and the story's Model setting (which base
// writes it, when the server offers two), from GET /healthz. Loaded before app.js; plain
// script: its functions use app.js's el and state when called.
"use strict";

// One poll loop: often while the model loads or the server is away, now and then once it
// is ready (so a server that stopped is shown as such even while nobody writes).
function pollHealthIn(ms) {
  clearTimeout(state.healthTimer);
  state.healthTimer = setTimeout(pollHealth, ms);
}

function setModelStatus(kind, text) {
  if (el.modelStatus.textContent !== text) el.modelStatus.textContent = text;  // unchanged: not read out again
  el.modelStatus.dataset.state = kind;
}

// The /healthz entry of the model the open story uses (its Model setting, else the server's
// own base), or null when the server does not offer the one it asks for.
function storyModel(health) {
  const models = health.models || [{ ...health, default: true }];
  const want = state.story && state.story.settings.model;
  return models.find((m) => (want ? m.role === want : m.default)) ||
    (want ? null : models[0]);
}

// "Qwen2.5-Coder-1.5B (best)"; a model that is not a named base: its name, if known.
function modelName(m) {
  const name = m.label || m.name;
  return name && m.role ? `${name} (${m.role})` : name || "";
}

// The model line and the Model setting for the open story, from the last /healthz; returns
// the chosen model's status.
function showModel() {
  const health = state.health;
  if (!health) return "loading";
  showModelChoice(health);
  const m = storyModel(health);
  if (!m) {
    state.ready = false;
    setModelStatus("error", `This story uses the ${state.story.settings.model} model, which this server does ` +
      "not offer now; pick another model in the story's settings.");
    updateButtons();
    return "error";
  }
  const name = modelName(m);
  if (m.status === "ready" || m.status === "not loaded") {
    // Plain words here; the engine, adapter and copy guard are a click away (Details).
    state.ready = true;
    if (m.status === "ready") {
      setModelStatus(m.notice ? "warning" : "ready", (name ? `Model ready: ${name}. ` : "Model ready. ") +
        guardPlain(m.copy_guard) + (m.notice ? ` ${m.notice}` : ""));
    } else {  // a second base no story has asked for yet: the first Continue loads it
      setModelStatus("ready", `Model: ${name}; it loads when you first press Continue.`);
    }
    const d = m.model || {};
    el.modelDetail.textContent = [d.engine && `engine: ${d.engine}`, (d.model || d.base) && `model: ${d.model || d.base}`,
      d.adapter && `fine-tuned adapter: ${d.adapter}`, guardDetail(m.copy_guard)].filter(Boolean).join(" · ");
    el.modelDetails.hidden = !el.modelDetail.textContent;
  } else if (m.status === "error") {
    state.ready = false;
    setModelStatus("error", `The model${name ? " " + name : ""} failed to load: ` +
      (m.error || "the server's log says why"));
  } else {
    state.ready = false;
    setModelStatus("loading", `Loading the model${name ? " " + name : ""} (${Math.round(m.seconds || 0)} s)… ` +
      "you can start writing.");
  }
  updateButtons();
  return m.status;
}

// The Model setting: shown when the server offers a choice of base (or the story asks for
// one it does not offer, so that the writer can pick another).
function showModelChoice(health) {
  const models = (health.models || []).filter((m) => m.role);
  const want = state.story && state.story.settings.model;
  const offered = new Set(models.map((m) => m.role));
  el.modelField.hidden = !(offered.size > 1 || (want && !offered.has(want)));
  for (const option of el.setModel.options) {
    const m = models.find((x) => x.role === option.value);
    option.disabled = !m;
    if (m && m.label) option.textContent = `${option.value === "best" ? "Best" : "Fast"}: ${m.label}`;
  }
  const own = models.find((m) => m.default);
  // Set once per saved version of the story: a poll must not undo a choice not saved yet.
  const key = state.story ? `${state.story.id}:${state.story.version}:${own && own.role}` : "";
  if (el.setModel.dataset.shown !== key) {
    el.setModel.dataset.shown = key;
    el.setModel.value = want || (own && own.role) || "fast";
  }
}

// The roles this server offers (null until /healthz has answered).
function offeredRoles() {
  return state.health ? (state.health.models || []).map((m) => m.role).filter(Boolean) : null;
}
