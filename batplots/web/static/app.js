// Batplots page: plain JS, no build step. All user text goes in through
// textContent/value, never innerHTML, so HTML in a story is shown as text.
"use strict";

const MAX_TURN_CHARS = 2000;
const HEALTH_POLL_MS = 1500;
const ALT_LABELS = ["POW!", "ZAP!", "BIFF!", "WHAM!", "ZOWIE!"];

const $ = (id) => document.getElementById(id);
const el = {
  modelStatus: $("model-status"), drawer: $("stories-drawer"), newForm: $("new-story-form"), newTitle: $("new-title"),
  list: $("story-list"), title: $("story-title"), renameBtn: $("rename-btn"), deleteBtn: $("delete-btn"),
  renameForm: $("rename-form"), renameInput: $("rename-input"), renameCancel: $("rename-cancel"),
  story: $("story"), retry: $("retry-btn"), undo: $("undo-btn"), redo: $("redo-btn"), alts: $("alternatives-btn"),
  altSection: $("alternatives"), altGrid: $("alternatives-grid"), altClose: $("alternatives-close"),
  writeForm: $("write-form"), text: $("next-text"), charCount: $("char-count"), cont: $("continue-btn"),
  stop: $("stop-btn"), status: $("status"), settingsForm: $("settings-form"), setSentences: $("set-sentences"),
  setTemperature: $("set-temperature"), setTopP: $("set-top-p"), setCopyLimit: $("set-copy-limit"),
  exportMd: $("export-md"), exportTxt: $("export-txt"), moreStories: $("more-stories"),
  accountBar: $("account-bar"), noAuthWarning: $("no-auth-warning"), logoutForm: $("logout-form"),
  signedInAs: $("signed-in-as"),
  shareLink: $("share-link"), copyShare: $("copy-share"), openShare: $("open-share"),
};

const state = { story: null, busy: false, ready: false, abort: null };

// --- status line ----------------------------------------------------------------------
function say(message, kind = "info") {
  el.status.textContent = message;
  el.status.dataset.kind = kind;
}

async function handleError(err) {
  if (err.name === "AbortError") { say("Stopped. Nothing was added."); return; }
  if (err instanceof ApiError && err.status === 401) {  // the session ended (logged out elsewhere, expired)
    location.assign("/login?next=" + encodeURIComponent(location.pathname + location.hash));
    return;
  }
  if (err instanceof ApiError && err.status === 409 && err.body.generating) {
    say("The model is still writing for this story (another tab, or the one just stopped); try again in a moment.",
        "error");
    return;
  }
  if (err instanceof ApiError && err.status === 409) {
    say("This story changed in another tab or window, so the latest version is shown now. " +
        "Anything you typed is still in the box.", "error");
    if (state.story) await openStory(state.story.id, { keepStatus: true });
    return;
  }
  if (err instanceof ApiError && err.status === 404 && state.story) {
    say("That story no longer exists (deleted elsewhere?).", "error");
    await refreshList();
    return;
  }
  say(err.message || String(err), "error");
}

// --- model health ---------------------------------------------------------------------
async function pollHealth() {
  let health;
  try {
    health = await api("GET", "/healthz");
  } catch (err) {
    el.modelStatus.dataset.state = "error";
    el.modelStatus.textContent = "The server is not answering.";
    setTimeout(pollHealth, HEALTH_POLL_MS * 2);
    return;
  }
  if (health.status === "ready") {
    state.ready = true;
    const m = health.model || {};
    el.modelStatus.dataset.state = "ready";
    el.modelStatus.textContent = "Model ready: " + [m.model || m.engine, m.adapter ? `+ ${m.adapter}` : ""].join(" ").trim()
      + guardStatus(health.copy_guard) + (health.notice ? ` · ${health.notice}` : "");
    if (health.notice) el.modelStatus.dataset.state = "warning";
  } else if (health.status === "error") {
    el.modelStatus.dataset.state = "error";
    el.modelStatus.textContent = "The model failed to load: " + health.error;
  } else {
    el.modelStatus.dataset.state = "loading";
    el.modelStatus.textContent = `Loading the model (${Math.round(health.seconds || 0)} s)… you can start writing.`;
    setTimeout(pollHealth, HEALTH_POLL_MS);
  }
  updateButtons();
}

// --- story list -----------------------------------------------------------------------
// The first page of the story list; "More case files" appends the next ones.
async function refreshList() {
  const { data: stories, next } = await apiPage("/api/stories");
  el.list.replaceChildren();
  appendStories(stories, next);
  return stories;
}

function appendStories(stories, next) {
  el.moreStories.hidden = !next;
  el.moreStories.dataset.next = next || "";
  for (const s of stories) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.id = s.id;
    b.append(s.title);
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = `${s.turn_count} passage${s.turn_count === 1 ? "" : "s"} · ${new Date(s.updated_at).toLocaleString()}`;
    b.append(meta);
    if (state.story && s.id === state.story.id) b.setAttribute("aria-current", "true");
    b.addEventListener("click", () => openStory(s.id).then(() => el.text.focus()).catch(handleError));
    li.append(b);
    el.list.append(li);
  }
}

el.moreStories.addEventListener("click", async () => {
  try {
    const { data, next } = await apiPage(el.moreStories.dataset.next);
    appendStories(data, next);
  } catch (err) { await handleError(err); }
});

// Who is signed in (servers with accounts), and the --no-auth warning.
async function showAccount() {
  const info = await api("GET", "/api/session");
  el.noAuthWarning.hidden = !info.warning;
  el.noAuthWarning.textContent = info.warning ? `Warning: ${info.warning}.` : "";
  el.logoutForm.hidden = !info.user;
  el.signedInAs.textContent = info.user ? `Signed in as ${info.user}` : "";
  el.accountBar.hidden = !info.user && !info.warning;
}

async function openStory(id, { keepStatus = false } = {}) {
  const story = await api("GET", `/api/stories/${encodeURIComponent(id)}`);
  render(story);
  if (!keepStatus) say("");
  try { localStorage.setItem("batplots:last", story.id); } catch (e) { /* private mode */ }
  if (location.hash !== `#story=${story.id}`) history.replaceState(null, "", `#story=${story.id}`);
  await refreshList();
  if (window.matchMedia("(max-width: 760px)").matches) el.drawer.open = false;
}

async function newStory(title) {
  const story = await api("POST", "/api/stories", title ? { title } : {});
  await openStory(story.id);
  say(`New story “${story.title}” started.`);
  el.text.focus();
}

// --- rendering ------------------------------------------------------------------------
function passageSpan(turn) {
  const span = document.createElement("span");
  span.className = `passage ${turn.author}` + (turn.edited ? " edited" : "");
  span.dataset.turnId = turn.id;
  span.tabIndex = 0;
  span.title = "Click or press Enter to edit this passage";
  const who = document.createElement("span");
  who.className = "visually-hidden";
  who.textContent = turn.author === "model" ? "Model: " : "You: ";
  const text = document.createElement("span");
  text.className = "passage-text";
  const sentences = turn.author === "model" ? provenanceSpans(turn) : null;  // provenance.js
  if (sentences) text.append(...sentences); else text.textContent = turn.text;
  span.append(who, text);
  const why = turn.author === "model" ? provenanceButton(turn, say) : null;
  if (why) span.append(why);
  span.addEventListener("click", () => editPassage(turn));
  span.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); editPassage(turn); }
  });
  return span;
}

function render(story) {
  state.story = story;
  el.title.textContent = story.title;
  document.title = `${story.title} · Batplots`;
  const nodes = [];
  story.turns.forEach((turn, i) => {
    if (i > 0) nodes.push(document.createTextNode(" "));
    nodes.push(passageSpan(turn));
  });
  el.story.replaceChildren(...nodes);
  el.setSentences.value = String(story.settings.sentences);
  el.setTemperature.value = String(story.settings.temperature);
  el.setTopP.value = String(story.settings.top_p);
  el.setCopyLimit.value = String(story.settings.copy_limit ?? 8);
  const base = `/api/stories/${encodeURIComponent(story.id)}/export`;
  el.exportMd.href = `${base}?format=md`;
  el.exportTxt.href = `${base}?format=txt`;
  const share = `${location.origin}/s/${story.share_id}`;
  el.shareLink.value = share;
  el.openShare.href = share;
  updateButtons();
}

function updateButtons() {
  const s = state.story;
  const turns = s ? s.turns : [];
  const last = turns[turns.length - 1];
  const idle = !state.busy && !!s;
  el.cont.disabled = !idle || !state.ready;
  el.retry.disabled = !idle || !state.ready || !last || last.author !== "model";
  el.alts.disabled = !idle || !state.ready || (turns.length === 0 && !el.text.value.trim());
  el.undo.disabled = !idle || turns.length === 0;
  el.redo.disabled = !idle || !s || !s.redo_count;
  el.renameBtn.disabled = el.deleteBtn.disabled = !idle;
  el.stop.hidden = !state.abort;
}

function updateCount() {
  const n = el.text.value.length;
  el.charCount.textContent = `${n} / ${MAX_TURN_CHARS}`;
  el.charCount.classList.toggle("over", n > MAX_TURN_CHARS);
}

// Streams a model passage into a draft span at the end of the story; resolves with the saved story.
async function generate(action) {
  const s = state.story;
  const draft = document.createElement("span");
  draft.className = "passage model draft";
  draft.setAttribute("aria-label", "The model is writing");
  if (action === "retry") {
    const lastSpan = el.story.lastElementChild;
    if (lastSpan) lastSpan.classList.add("replacing");
  }
  if (s.turns.length) el.story.append(document.createTextNode(" "));
  el.story.append(draft);
  let text = "";
  let saved = null;
  let failure = null;
  state.abort = new AbortController();
  updateButtons();
  say("The model is writing…", "busy");
  try {
    await streamEvents(`/api/stories/${encodeURIComponent(s.id)}/${action}`, { version: s.version }, (event, data) => {
      if (event === "piece") { text += data.text; draft.textContent = text.trimStart(); }
      else if (event === "rewind") { text = data.text; draft.textContent = text.trimStart(); }
      else if (event === "done") saved = data.story;
      else if (event === "error") failure = new ApiError(data.status || 500, data.message, data);
    }, state.abort.signal);
  } finally {
    state.abort = null;
  }
  if (failure) throw failure;
  if (!saved) throw new Error("The connection ended before the model finished; nothing was added.");
  return saved;
}

async function withBusy(fn) {
  if (state.busy) return;
  state.busy = true;
  updateButtons();
  try {
    await fn();
  } catch (err) {
    if (state.story) {
      // Show the story as saved (a failed or stopped generation added nothing).
      try { render(await api("GET", `/api/stories/${encodeURIComponent(state.story.id)}`)); } catch (e) { /* shown below */ }
    }
    await handleError(err);
  } finally {
    state.busy = false;
    updateButtons();
  }
}

async function continueStory() {
  await withBusy(async () => {
    const typed = el.text.value;
    if (typed.length > MAX_TURN_CHARS) {
      throw new Error(`Your passage has ${typed.length} characters; at most ${MAX_TURN_CHARS} fit in one turn.`);
    }
    if (typed.trim()) {
      render(await api("POST", `/api/stories/${encodeURIComponent(state.story.id)}/turns`,
                       { text: typed, version: state.story.version }));
      el.text.value = "";  // saved: only now is it safe to clear the box
      updateCount();
    } else if (!state.story.turns.length) {
      throw new Error("The story is empty: write its first sentence or two, then press Continue.");
    }
    render(await generate("continue"));
    say("Your turn!");
    await refreshList();
  });
  el.text.focus();
}

async function retry() {
  await withBusy(async () => {
    render(await generate("retry"));
    say("Here is another take.");
  });
  el.text.focus();
}

async function simple(action, message) {
  await withBusy(async () => {
    render(await api("POST", `/api/stories/${encodeURIComponent(state.story.id)}/${action}`, { version: state.story.version }));
    say(message);
    await refreshList();
  });
}

// --- alternatives ---------------------------------------------------------------------
async function alternatives() {
  await withBusy(async () => {
    const typed = el.text.value;
    if (typed.trim()) {
      render(await api("POST", `/api/stories/${encodeURIComponent(state.story.id)}/turns`,
                       { text: typed, version: state.story.version }));
      el.text.value = "";
      updateCount();
    }
    say("The model is writing three takes…", "busy");
    const res = await api("POST", `/api/stories/${encodeURIComponent(state.story.id)}/alternatives`,
                          { version: state.story.version, n: 3 });
    showAlternatives(res.candidates);
    say("Pick the continuation you like best, or keep none.");
  });
}

function showAlternatives(candidates) {
  el.altGrid.replaceChildren();
  candidates.forEach((cand, i) => {
    const card = document.createElement("div");
    card.className = "alt-card";
    const h = document.createElement("h4");
    h.textContent = ALT_LABELS[i % ALT_LABELS.length];
    const p = document.createElement("p");
    p.textContent = cand.text;
    const pick = document.createElement("button");
    pick.type = "button";
    pick.className = "btn btn-small btn-red";
    pick.textContent = `Use take ${i + 1}`;
    pick.setAttribute("aria-label", `Use take ${i + 1}: ${cand.text.slice(0, 60)}`);
    pick.addEventListener("click", () => pickAlternative(cand));
    card.append(h, p, pick);
    el.altGrid.append(card);
  });
  el.altSection.hidden = false;
  const first = el.altGrid.querySelector("button");
  if (first) first.focus();
}

function hideAlternatives() {
  el.altSection.hidden = true;
  el.altGrid.replaceChildren();
}

async function pickAlternative(cand) {
  await withBusy(async () => {
    render(await api("POST", `/api/stories/${encodeURIComponent(state.story.id)}/turns`,
                     { text: cand.text, author: "model", seed: cand.seed, version: state.story.version }));
    hideAlternatives();
    say("Added. Your turn!");
    await refreshList();
  });
  el.text.focus();
}

// --- editing a passage in place -------------------------------------------------------
function editPassage(turn) {
  if (state.busy) return;
  const span = el.story.querySelector(`[data-turn-id="${turn.id}"]`);
  if (!span) return;
  const box = document.createElement("span");
  box.className = "passage-editor";
  const id = `edit-${turn.id}`;
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = turn.author === "model" ? "Edit the model's passage" : "Edit your passage";
  const area = document.createElement("textarea");
  area.id = id;
  area.value = turn.text;
  area.maxLength = MAX_TURN_CHARS;
  const row = document.createElement("span");
  row.className = "row";
  const save = document.createElement("button");
  save.type = "button"; save.className = "btn btn-small btn-blue"; save.textContent = "Save passage";
  const cancel = document.createElement("button");
  cancel.type = "button"; cancel.className = "btn btn-small"; cancel.textContent = "Cancel";
  row.append(save, cancel);
  box.append(label, area, row);
  span.replaceWith(box);
  area.focus();

  const close = () => { render(state.story); const back = el.story.querySelector(`[data-turn-id="${turn.id}"]`); if (back) back.focus(); };
  // Errors keep the editor open with the edited text: nothing typed is lost.
  const commit = async () => {
    if (state.busy) return;
    state.busy = true;
    updateButtons();
    try {
      render(await api("PATCH", `/api/stories/${encodeURIComponent(state.story.id)}/turns/${turn.id}`,
                       { text: area.value, version: state.story.version }));
      say("Passage saved.");
      const back = el.story.querySelector(`[data-turn-id="${turn.id}"]`);
      if (back) back.focus();
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        state.story = await api("GET", `/api/stories/${encodeURIComponent(state.story.id)}`);
        say("This story changed in another tab or window. Your edit is still here: save again to apply it " +
            "to the latest version, or cancel.", "error");
      } else {
        say(err.message || String(err), "error");
      }
      area.focus();
    } finally {
      state.busy = false;
      updateButtons();
    }
  };
  save.addEventListener("click", commit);
  cancel.addEventListener("click", close);
  area.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") { ev.preventDefault(); close(); }
    else if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); ev.stopPropagation(); commit(); }
  });
}

// --- wiring ---------------------------------------------------------------------------
el.writeForm.addEventListener("submit", (ev) => { ev.preventDefault(); continueStory(); });
el.text.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); continueStory(); }
});
el.text.addEventListener("input", () => { updateCount(); updateButtons(); });
el.stop.addEventListener("click", () => { if (state.abort) state.abort.abort(); });
el.retry.addEventListener("click", retry);
el.undo.addEventListener("click", () => simple("undo", "Removed the last passage (Redo brings it back)."));
el.redo.addEventListener("click", () => simple("redo", "Brought it back."));
el.alts.addEventListener("click", alternatives);
el.altClose.addEventListener("click", () => { hideAlternatives(); say("Kept none."); el.text.focus(); });

el.newForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const title = el.newTitle.value.trim();
  withBusy(async () => { await newStory(title); el.newTitle.value = ""; });
});

el.renameBtn.addEventListener("click", () => {
  el.renameForm.hidden = false;
  el.renameInput.value = state.story.title;
  el.renameInput.select();
  el.renameInput.focus();
});
el.renameCancel.addEventListener("click", () => { el.renameForm.hidden = true; el.renameBtn.focus(); });
el.renameForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  withBusy(async () => {
    render(await api("PATCH", `/api/stories/${encodeURIComponent(state.story.id)}`,
                     { title: el.renameInput.value, version: state.story.version }));
    el.renameForm.hidden = true;
    say("Renamed.");
    await refreshList();
    el.renameBtn.focus();
  });
});

el.deleteBtn.addEventListener("click", () => {
  if (!window.confirm(`Delete “${state.story.title}” for good?`)) return;
  withBusy(async () => {
    await api("DELETE", `/api/stories/${encodeURIComponent(state.story.id)}?version=${state.story.version}`);
    const gone = state.story.title;
    state.story = null;
    const stories = await refreshList();
    if (stories.length) await openStory(stories[0].id);
    else await newStory("");
    say(`Deleted “${gone}”.`);
  });
});

el.settingsForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  withBusy(async () => {
    const settings = {
      sentences: Number(el.setSentences.value),
      temperature: Number(el.setTemperature.value),
      top_p: Number(el.setTopP.value),
      copy_limit: Number(el.setCopyLimit.value),
    };
    render(await api("PATCH", `/api/stories/${encodeURIComponent(state.story.id)}`,
                     { settings, version: state.story.version }));
    say("Settings saved for this story.");
  });
});

el.copyShare.addEventListener("click", async () => {
  el.shareLink.select();
  try {
    await navigator.clipboard.writeText(el.shareLink.value);
  } catch (e) {
    document.execCommand("copy");  // clipboard API needs a secure context
  }
  say("Share link copied. Anyone with it can read (not change) this story.");
});

document.addEventListener("keydown", (ev) => {
  // Ctrl+Enter continues from anywhere except a passage being edited.
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && !ev.defaultPrevented &&
      !(ev.target instanceof HTMLElement && ev.target.closest(".passage-editor, form:not(#write-form)"))) {
    ev.preventDefault();
    continueStory();
  }
});

async function start() {
  updateCount();
  pollHealth();
  showAccount().catch(handleError);
  try {
    const stories = await refreshList();
    const fromHash = (location.hash.match(/^#story=([\w-]+)$/) || [])[1];
    let last = null;
    try { last = localStorage.getItem("batplots:last"); } catch (e) { /* private mode */ }
    const wanted = [fromHash, last].find((id) => id && stories.some((s) => s.id === id));
    if (wanted) await openStory(wanted);
    else if (stories.length) await openStory(stories[0].id);
    else await newStory("");
  } catch (err) {
    await handleError(err);
  }
}

start();
