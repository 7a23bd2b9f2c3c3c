// Batplots page: plain JS, no build step. All user text goes in through
// textContent/value, never innerHTML, so HTML in a story is shown as text.
"use strict";

const MAX_TURN_CHARS = 2000;
const HEALTH_POLL_MS = 1500;
const HEALTH_WATCH_MS = 5000;  // once the model is ready: a stopped server is noticed within this
const MARKS_KEY = "batplots:marks";
const SETTINGS_KEY = "batplots:settings";  // the settings last saved: a new story starts with them
const AUTO_KEY = "batplots:auto";  // the empty story the page made itself (first visit): not kept once left
// The settings' plain names (the API's errors name the technical ones).
const SETTING_NAMES = { sentences: "Sentences", temperature: "Wildness", top_p: "Word choice", copy_limit: "Copy guard",
                        model: "Model" };

const $ = (id) => document.getElementById(id);
const el = {
  modelStatus: $("model-status"), drawer: $("stories-drawer"), newForm: $("new-story-form"), newTitle: $("new-title"),
  list: $("story-list"), title: $("story-title"), renameBtn: $("rename-btn"), deleteBtn: $("delete-btn"),
  renameForm: $("rename-form"), renameInput: $("rename-input"), renameCancel: $("rename-cancel"),
  story: $("story"), retry: $("retry-btn"), undo: $("undo-btn"), redo: $("redo-btn"), alts: $("alternatives-btn"),
  altSection: $("alternatives"), altGrid: $("alternatives-grid"), altClose: $("alternatives-close"),
  altHeading: $("alternatives-heading"), altWhy: $("alternatives-why"), modelDetail: $("model-detail"),
  modelDetails: $("model-details"), uses: $("uses-settings"), settingsState: $("settings-state"),
  marks: $("marks-toggle"),
  writeForm: $("write-form"), text: $("next-text"), charCount: $("char-count"), cont: $("continue-btn"),
  stop: $("stop-btn"), status: $("status"), settingsForm: $("settings-form"), setSentences: $("set-sentences"),
  setTemperature: $("set-temperature"), setTopP: $("set-top-p"), setCopyLimit: $("set-copy-limit"),
  modelField: $("model-field"), setModel: $("set-model"),
  exportMd: $("export-md"), exportTxt: $("export-txt"), moreStories: $("more-stories"),
  accountBar: $("account-bar"), noAuthWarning: $("no-auth-warning"), logoutForm: $("logout-form"),
  signedInAs: $("signed-in-as"),
  beats: [...document.querySelectorAll(".beat-btn")],
  shareLink: $("share-link"), copyShare: $("copy-share"), openShare: $("open-share"),
};

// stopped: what Stop means for the action running (what was kept); publicUrl: the
// server's --public-url for share links (else this page's own address).
// down: the server stopped answering (the page carries on by itself when /healthz answers again).
const state = { story: null, busy: false, ready: false, abort: null, stopped: null, publicUrl: null,
                settingsSave: null, settingsPending: false, casePending: null, toStop: false, down: false,
                healthTimer: null, health: null };

// --- status line ----------------------------------------------------------------------
function say(message, kind = "info") {
  el.status.textContent = message;
  el.status.dataset.kind = kind;
}

// The words for a lost connection: what happened, what was kept, what happens next.
const LOST_MESSAGE = "The server stopped answering, so nothing more was saved. Your story is shown as it was last " +
  "saved, and anything in the box is still there. The page carries on by itself when the server is back.";

async function handleError(err) {
  if (err instanceof ConnectionLost) {
    hideAlternatives();
    if (state.story) render(state.story);  // drops an unfinished draft: it was never saved
    say(LOST_MESSAGE, "error");
    serverDown();
    return;
  }
  if (err.name === "AbortError") { hideAlternatives(); say(state.stopped || "Stopped. The model added nothing."); return; }
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
    hideAlternatives();
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
  // The story's model is loading (a base loaded on first use, say): the model line says so at once.
  if (err instanceof ApiError && err.status === 503) pollHealth();
  say(err.message || String(err), "error");
}

// --- model health ---------------------------------------------------------------------
// The model line and the Model setting: models.js.

// The server stopped answering: the model is unavailable until /healthz answers again.
function serverDown() {
  state.ready = false;
  state.down = true;
  setModelStatus("error", "The server is not answering (stopped?). Waiting for it to come back…");
  updateButtons();
  pollHealthIn(HEALTH_POLL_MS);
}

// The server answers again: show the story as it is saved there and carry on.
async function serverBack() {
  state.down = false;
  if (!state.story || state.busy) return;
  try {
    await openStory(state.story.id, { keepStatus: true });
    say("The server is back. Your story is as it was last saved; carry on.");
  } catch (err) {
    await handleError(err);
  }
}

async function pollHealth() {
  let health;
  try {
    health = await api("GET", "/healthz");
  } catch (err) {
    if (err instanceof ConnectionLost) serverDown();
    else { setModelStatus("error", "The server is not answering."); pollHealthIn(HEALTH_POLL_MS * 2); }
    return;
  }
  const wasDown = state.down;
  state.health = health;
  pollHealthIn(showModel() === "loading" ? HEALTH_POLL_MS : HEALTH_WATCH_MS);
  if (wasDown) await serverBack();
}

// --- story list -----------------------------------------------------------------------
// The first page of the story list; "More stories" appends the next ones.
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
  state.publicUrl = info.public_url || null;
  if (state.story) showShareLink(state.story);
}

// The empty story the page made on a first visit (or after deleting the last one) goes
// when the writer leaves it untouched for another: the list keeps only stories begun.
async function dropUntouched(leaving) {
  let auto = null;
  try { auto = localStorage.getItem(AUTO_KEY); } catch (e) { /* private mode */ }
  const s = state.story;
  if (!s || s.id !== auto || s.id === leaving) return;
  try { localStorage.removeItem(AUTO_KEY); } catch (e) { /* private mode */ }
  if (s.turns.length || s.redo_count || s.title !== "Untitled episode") return;
  try {
    await api("DELETE", `/api/stories/${encodeURIComponent(s.id)}?version=${s.version}`);
  } catch (err) {
    if (err instanceof ConnectionLost || (err instanceof ApiError && err.status === 401)) throw err;
    /* changed meanwhile (another tab wrote in it): kept */
  }
}

function lastSettings() {
  try { return JSON.parse(localStorage.getItem(SETTINGS_KEY) || "null"); } catch (e) { return null; }
}

async function openStory(id, { keepStatus = false } = {}) {
  await dropUntouched(id);
  const story = await api("GET", `/api/stories/${encodeURIComponent(id)}`);
  render(story);
  if (!keepStatus) say("");
  try { localStorage.setItem("batplots:last", story.id); } catch (e) { /* private mode */ }
  if (location.hash !== `#story=${story.id}`) history.replaceState(null, "", `#story=${story.id}`);
  await refreshList();
  if (window.matchMedia("(max-width: 760px)").matches) el.drawer.open = false;
}

// A new story starts with the settings last saved (else the server's defaults); auto: made
// by the page itself, not the writer (dropped if left untouched).
async function newStory(title, { auto = false } = {}) {
  await dropUntouched(null);
  const body = title ? { title } : {};
  const settings = lastSettings();
  const roles = offeredRoles();
  if (settings && settings.model && roles && !roles.includes(settings.model)) delete settings.model;
  let story;
  try {
    story = await api("POST", "/api/stories", settings ? { ...body, settings } : body);
  } catch (err) {
    if (!(settings && err instanceof ApiError && err.status === 422)) throw err;
    story = await api("POST", "/api/stories", body);  // settings this server no longer takes: its defaults
  }
  try { if (auto) localStorage.setItem(AUTO_KEY, story.id); } catch (e) { /* private mode */ }
  await openStory(story.id);
  // Only a story the writer asked for is announced: the page's own first story could land
  // after the writer has begun typing, and its note would replace what they were told.
  if (!auto) say(`New story “${story.title}” started.`);
  el.text.focus();
}

// --- rendering ------------------------------------------------------------------------
function render(story) {
  state.story = story;
  el.title.textContent = story.title;
  document.title = `${story.title} · Batplots`;
  el.story.replaceChildren(...story.turns.map(turnNode));  // story.js: a paragraph block per passage
  setRoving(null);  // the story's one tab stop: its last passage
  const st = story.settings;
  el.setSentences.value = String(st.sentences);
  el.setTemperature.value = String(st.temperature);
  el.setTopP.value = String(st.top_p);
  el.setCopyLimit.value = String(st.copy_limit ?? 8);
  showModel();  // the model line names the base this story uses
  el.uses.textContent = `Continue adds ${usesText(st)}.`;
  const base = `/api/stories/${encodeURIComponent(story.id)}/export`;
  el.exportMd.href = `${base}?format=md`;
  el.exportTxt.href = `${base}?format=txt`;
  showShareLink(story);
  renderCase(story);  // casefile.js: the case file and the outline beside the story
  updateButtons();
}

function usesText(st) {
  return `${st.sentences} sentence${st.sentences === 1 ? "" : "s"} (wildness ${st.temperature}, ` +
    `word choice ${st.top_p}, copy guard ${st.copy_limit ? st.copy_limit + " words" : "off"})`;
}

// From the server's --public-url when it has one, else the address this page was opened by.
function showShareLink(story) {
  const share = `${(state.publicUrl || location.origin).replace(/\/+$/, "")}/s/${story.share_id}`;
  el.shareLink.value = share;
  el.openShare.href = share;
}

function updateButtons() {
  const s = state.story;
  const turns = s ? s.turns : [];
  const last = turns[turns.length - 1];
  const idle = !state.busy && !!s;
  const focused = document.activeElement;
  el.cont.disabled = !idle || !state.ready;
  for (const b of el.beats) b.disabled = el.cont.disabled || (turns.length === 0 && !el.text.value.trim());
  caseEl.edit.disabled = caseEl.refill.disabled = !idle;
  el.retry.disabled = !idle || !state.ready || !last || last.author !== "model";
  el.alts.disabled = !idle || !state.ready || (turns.length === 0 && !el.text.value.trim());
  el.undo.disabled = !idle || turns.length === 0;
  el.redo.disabled = !idle || !s || !s.redo_count;
  el.renameBtn.disabled = el.deleteBtn.disabled = !idle;
  el.stop.hidden = !state.abort;
  // A control that just disabled or hid itself must not drop focus to the page: Stop
  // while the model writes, else the writing box.
  if (focused && focused !== document.body && (focused.disabled || focused.hidden)) {
    (state.abort ? el.stop : el.text).focus();
    state.toStop = state.busy && !state.abort;  // Stop once it shows (generate)
  }
}

function checkTyped(typed) {
  if (typed.length > MAX_TURN_CHARS) {
    throw new Error(`Your text has ${typed.length} characters; one passage holds at most ${MAX_TURN_CHARS}. ` +
      "Alternatives needs text that fits in one passage: Continue adds it a passage at a time.");
  }
}

// Text over one passage's limit: the part Continue adds now (up to the last sentence end,
// else paragraph or space, that fits) and the rest, which stays in the box.
function splitTyped(typed) {
  const head = typed.slice(0, MAX_TURN_CHARS + 1);
  let cut = -1;
  for (const m of head.matchAll(/[.!?]['"”’)]*(?=\s)|\n\s*\n/g)) {
    if (m.index + m[0].length <= MAX_TURN_CHARS) cut = m.index + m[0].length;
  }
  if (cut <= 0 || !typed.slice(0, cut).trim()) cut = head.lastIndexOf(" ", MAX_TURN_CHARS);
  if (cut <= 0 || !typed.slice(0, cut).trim()) cut = MAX_TURN_CHARS;
  const code = typed.charCodeAt(cut - 1);
  if (code >= 0xd800 && code <= 0xdbff) cut -= 1;  // never half a character
  return [typed.slice(0, cut), typed.slice(cut).replace(/^\s+/, "")];
}

const OVER_LIMIT_NOTE = "Continue adds the first part (to the end of a sentence) as your passage and keeps the rest " +
  "in the box; the model writes once the box holds one passage or less.";
let wasOver = false;

function updateCount() {
  const n = el.text.value.length;
  const over = n > MAX_TURN_CHARS;
  el.charCount.textContent = `${n} / ${MAX_TURN_CHARS}`;
  el.charCount.classList.toggle("over", over);
  // The limit speaks when it is hit (a paste, say): nothing is cut from the box.
  if (over && !wasOver) say(`Your text has ${n} characters; one passage holds at most ${MAX_TURN_CHARS}. ${OVER_LIMIT_NOTE}`, "error");
  else if (!over && wasOver && !state.busy) say("");  // what was said about the long text is past
  wasOver = over;
}

// Streams a model passage into a draft at the end of the story; resolves with the saved story.
async function generate(action, beat) {
  const s = state.story;
  const draft = document.createElement("div");
  draft.className = "turn model";
  const draftText = document.createElement("div");
  draftText.className = "passage model draft";
  draftText.setAttribute("aria-label", "The model is writing");
  draft.append(draftText);
  if (action === "retry") {
    const lastTurn = el.story.lastElementChild;
    if (lastTurn) lastTurn.classList.add("replacing");
  }
  el.story.append(draft);
  startFollowing(draft);
  let text = "";
  // A rewind takes back a sentence that failed the Writer's checks: what the reader saw stays,
  // struck through and labelled, until its replacement is written (mark: {at, gone}).
  let mark = null;
  const writing = "The model is writing… (Escape stops)";
  const show = () => {
    if (!mark) { draftText.textContent = text.trimStart(); return; }
    const del = document.createElement("del");
    del.className = "rewritten";
    del.textContent = mark.gone;
    const why = document.createElement("span");
    why.className = "visually-hidden";
    why.textContent = " (being rewritten: it did not pass the model's checks) ";
    draftText.replaceChildren(text.slice(0, mark.at).trimStart(), del, why, text.slice(mark.at));
  };
  const rewind = (kept) => {
    const gone = text.startsWith(kept) ? text.slice(kept.length).trim() : "";
    if (gone) {
      mark = { at: kept.length, gone };
      say("The model is rewriting a sentence that did not pass its checks (it stays struck through until " +
          "the new one is written)… (Escape stops)", "busy");
    } else if (mark && text.startsWith(kept) && kept.length >= mark.at) {
      mark.at = kept.length;  // nothing new was taken back: the struck sentence still waits
    } else {
      mark = null;  // another take replaced the draft
    }
    text = kept;
  };
  const grow = (piece) => {
    text += piece;
    if (mark && /[.!?]/.test(text.slice(mark.at))) { mark = null; say(writing, "busy"); }  // replaced
  };
  let saved = null;
  let failure = null;
  state.abort = new AbortController();
  updateButtons();
  if (state.toStop) { el.stop.focus(); state.toStop = false; }
  say(writing, "busy");
  try {
    const body = beat ? { version: s.version, beat } : { version: s.version };
    await streamEvents(`/api/stories/${encodeURIComponent(s.id)}/${action}`, body, (event, data) => {
      if (event === "piece") { grow(data.text); show(); keepInView(); }
      else if (event === "rewind") { rewind(data.text); show(); keepInView(); }
      else if (event === "done") saved = data.story;
      else if (event === "error") failure = new ApiError(data.status || 500, data.message, data);
    }, state.abort.signal);
  } finally {
    state.abort = null;
    stopFollowing();
  }
  if (failure) throw failure;
  if (!saved) throw new ConnectionLost();  // the stream ended with neither the story nor an error
  return saved;
}

async function withBusy(fn) {
  if (state.busy) return;
  state.busy = true;
  state.stopped = null;
  updateButtons();
  try {
    if (state.settingsSave) await state.settingsSave;  // a settings change applies before the next turn
    await fn();
  } catch (err) {
    if (state.story && !(err instanceof ConnectionLost)) {
      // Show the story as saved (a failed or stopped generation added nothing).
      try { render(await api("GET", `/api/stories/${encodeURIComponent(state.story.id)}`)); } catch (e) { /* shown below */ }
    }
    await handleError(err);
  } finally {
    state.busy = false;
    updateButtons();
    const settingsSaved = state.settingsPending ? saveSettings() : null;
    if (state.casePending) {  // a case file saved while the model wrote: now, after any settings
      const save = state.casePending;
      state.casePending = null;
      Promise.resolve(settingsSaved).then(save);
    }
  }
}

// beat: the next beat of the show asked for (a beat button), or none (Continue).
async function continueStory(beat) {
  hideAlternatives();
  await withBusy(async () => {
    const typed = el.text.value;
    if (typed.length > MAX_TURN_CHARS) {
      const [part, rest] = splitTyped(typed);
      render(await api("POST", `/api/stories/${encodeURIComponent(state.story.id)}/turns`,
                       { text: part, version: state.story.version }));
      if (el.text.value === typed) { el.text.value = rest; wasOver = rest.length > MAX_TURN_CHARS; updateCount(); }
      say(`Added the first ${part.length} characters as your passage (one passage holds at most ${MAX_TURN_CHARS}); ` +
          `the other ${rest.length} are still in the box. ` + (rest.length > MAX_TURN_CHARS
            ? "Continue adds the next part." : "Continue adds them and the model writes on."));
      refreshList().catch(handleError);
      return;
    }
    state.stopped = "Stopped. The model added nothing.";
    if (typed.trim()) {
      render(await api("POST", `/api/stories/${encodeURIComponent(state.story.id)}/turns`,
                       { text: typed, version: state.story.version }));
      el.text.value = "";  // saved: only now is it safe to clear the box
      updateCount();
      state.stopped = "Stopped. Your passage was added; the model added nothing.";
    } else if (!state.story.turns.length) {
      throw new Error("The story is empty: write its first sentence or two, then press Continue.");
    }
    render(await generate("continue", beat));
    say("Your turn!");
    refreshList().catch(handleError);  // the drawer catches up; the pen is back at once
  });
  el.text.focus();
}

async function retry() {
  hideAlternatives();
  await withBusy(async () => {
    state.stopped = "Stopped. The model's last passage is unchanged.";
    render(await generate("retry"));
    say("Here is another take.");
  });
  el.text.focus();
}

// Undo and Redo: focus stays on the button pressed while it can be pressed again,
// else goes to the writing box.
async function simple(action, message, button) {
  hideAlternatives();
  await withBusy(async () => {
    render(await api("POST", `/api/stories/${encodeURIComponent(state.story.id)}/${action}`, { version: state.story.version }));
    say(message);
    refreshList().catch(handleError);
  });
  (button.disabled ? el.text : button).focus();
}

// --- wiring ---------------------------------------------------------------------------
el.writeForm.addEventListener("submit", (ev) => { ev.preventDefault(); continueStory(); });
for (const b of el.beats) b.addEventListener("click", () => continueStory(b.dataset.beat));
el.text.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); continueStory(); }
});
el.text.addEventListener("input", () => {
  // An error about what was done before goes once the writer acts again (the limit's own note stays).
  if (el.status.dataset.kind === "error" && !wasOver && !state.down) say("");
  updateCount();
  updateButtons();
});
el.stop.addEventListener("click", () => { if (state.abort) state.abort.abort(); });
el.retry.addEventListener("click", retry);
el.undo.addEventListener("click", () => simple("undo", "Removed the last passage (Redo brings it back).", el.undo));
el.redo.addEventListener("click", () => simple("redo", "Brought it back.", el.redo));
el.alts.addEventListener("click", alternatives);
el.altClose.addEventListener("click", keepNone);
el.story.addEventListener("keydown", onStoryKey);
el.story.addEventListener("click", onStoryClick);
el.story.addEventListener("focusin", (ev) => { if (storyItems().includes(ev.target)) setRoving(ev.target); });

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
    else await newStory("", { auto: true });
    say(`Deleted “${gone}”.`);
  });
});

// Settings take effect when changed: saved with the story at once (or, while the model
// writes, as soon as it is done); Continue shows what it uses.
async function saveSettings() {
  if (!state.story) return;
  if (state.busy) { state.settingsPending = true; el.settingsState.textContent = "Saving when the model is done…"; return; }
  state.settingsPending = false;
  const settings = {
    sentences: Number(el.setSentences.value),
    temperature: Number(el.setTemperature.value),
    top_p: Number(el.setTopP.value),
    copy_limit: Number(el.setCopyLimit.value),
  };
  // The base, when the server offers a choice (a model it does not offer would be refused).
  if (!el.modelField.hidden && (offeredRoles() || []).includes(el.setModel.value)) settings.model = el.setModel.value;
  const modelBefore = state.story.settings.model;
  const job = (async () => {
    try {
      render(await api("PATCH", `/api/stories/${encodeURIComponent(state.story.id)}`,
                       { settings, version: state.story.version }));
      el.settingsState.textContent = `Saved: Continue adds ${usesText(state.story.settings)}.`;
      const { sentences, temperature, top_p, copy_limit, model } = state.story.settings;
      try { localStorage.setItem(SETTINGS_KEY, JSON.stringify({ sentences, temperature, top_p, copy_limit, model })); }
      catch (e) { /* private mode */ }
      el.settingsState.dataset.kind = "info";
      if (model !== modelBefore) pollHealth();  // the other base may be loading now: the line says so
    } catch (err) {
      if (err instanceof ApiError && err.status === 401 || err instanceof ConnectionLost) { await handleError(err); return; }
      if (err instanceof ApiError && err.status === 409) {
        // Another tab changed the story: show its settings as they are now, in plain words.
        try { render(await api("GET", `/api/stories/${encodeURIComponent(state.story.id)}`)); } catch (e) { /* as known */ }
        el.settingsState.textContent = "Not saved: this story was changed in another tab or window. " +
          `It now uses ${usesText(state.story.settings)}; change a setting again to save yours.`;
        el.settingsState.dataset.kind = "error";
        return;
      }
      const field = SETTING_NAMES[(err.body || {}).field];
      el.settingsState.textContent = `Not saved: ${field ? field + ": " : ""}${err.message}. ` +
        `This story still uses ${usesText(state.story.settings)}.`;
      el.settingsState.dataset.kind = "error";
    }
  })();
  state.settingsSave = job;
  await job;
  if (state.settingsSave === job) state.settingsSave = null;
}

for (const input of [el.setModel, el.setSentences, el.setTemperature, el.setTopP, el.setCopyLimit]) {
  input.addEventListener("change", saveSettings);
}
el.settingsForm.addEventListener("submit", (ev) => { ev.preventDefault(); saveSettings(); });

// The model's passages marked (italics, tint, bat-mark) or plain, as the reader likes.
function applyMarks(on) {
  el.story.classList.toggle("plain", !on);
  el.marks.checked = on;
}
el.marks.addEventListener("change", () => {
  applyMarks(el.marks.checked);
  try { localStorage.setItem(MARKS_KEY, el.marks.checked ? "on" : "off"); } catch (e) { /* private mode */ }
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
  // Escape stops the model, or closes Alternatives (an editor or popover handles its own first).
  if (ev.key === "Escape" && !ev.defaultPrevented) {
    if (state.abort) { ev.preventDefault(); state.abort.abort(); }
    else if (!el.altSection.hidden) { ev.preventDefault(); keepNone(); }
  }
});

async function start() {
  updateCount();
  let marks = "on";
  try { marks = localStorage.getItem(MARKS_KEY) || "on"; } catch (e) { /* private mode */ }
  applyMarks(marks !== "off");
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
    else await newStory("", { auto: true });
  } catch (err) {
    await handleError(err);
  }
}

start();
