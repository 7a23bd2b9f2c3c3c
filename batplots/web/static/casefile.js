// Batplots page: the case file beside the story (villains, henchmen, guests, target,
// hideout, deathtrap), filled in by the server after every passage and editable here,
// and the episode outline (the beats the story has had). Loaded before app.js; plain script.
"use strict";

const CASE_FIELDS = [["villains", "Villains"], ["henchmen", "Henchmen"], ["guests", "Guests"],
                     ["target", "Target or loot"], ["hideout", "Hideout"], ["deathtrap", "Deathtrap"]];
const CASE_MAX_ENTRIES = 8;  // batplots.story.casefile.MAX_ENTRIES
const CASE_MAX_CHARS = 80;  // batplots.story.casefile.MAX_ENTRY_CHARS

const caseEl = {
  drawer: document.getElementById("case-drawer"), list: document.getElementById("case-list"),
  edit: document.getElementById("case-edit"), refill: document.getElementById("case-refill"),
  form: document.getElementById("case-form"), fields: document.getElementById("case-fields"),
  cancel: document.getElementById("case-cancel"), state: document.getElementById("case-state"),
  outline: document.getElementById("outline"), outlineEmpty: document.getElementById("outline-empty"),
};

function caseSay(message, kind = "info") {
  caseEl.state.textContent = message;
  caseEl.state.dataset.kind = kind;
}

// The case file and outline as the story has them (an open editor keeps what was typed).
function renderCase(story) {
  const c = story.case_file || {};
  const edited = new Set(c.edited || []);
  const rows = [];
  for (const [field, name] of CASE_FIELDS) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    if (edited.has(field)) {
      const mark = document.createElement("span");
      mark.className = "case-mine";
      mark.textContent = " (yours)";
      dt.append(mark);
    }
    const dd = document.createElement("dd");
    dd.dataset.field = field;
    const entries = c[field] || [];
    dd.textContent = entries.length ? entries.join("; ") : "not yet known";
    dd.classList.toggle("unknown", !entries.length);
    rows.push(dt, dd);
  }
  caseEl.list.replaceChildren(...rows);
  caseEl.refill.hidden = !edited.size;
  const beats = story.outline || [];
  caseEl.outline.replaceChildren(...beats.map((b) => {
    const li = document.createElement("li");
    li.textContent = b.label;
    li.dataset.beat = b.beat;
    return li;
  }));
  caseEl.outline.hidden = !beats.length;
  caseEl.outlineEmpty.hidden = !!beats.length;
}

function openCaseForm() {
  const c = state.story.case_file || {};
  caseEl.fields.replaceChildren(...CASE_FIELDS.map(([field, name]) => {
    const wrap = document.createElement("div");
    wrap.className = "field";
    const label = document.createElement("label");
    label.htmlFor = `case-${field}`;
    label.textContent = `${name} (one a line, at most ${CASE_MAX_ENTRIES})`;
    const area = document.createElement("textarea");
    area.id = `case-${field}`;
    area.name = field;
    area.rows = 2;
    area.value = (c[field] || []).join("\n");
    wrap.append(label, area);
    return wrap;
  }));
  caseEl.form.hidden = false;
  caseEl.edit.hidden = true;
  caseSay("");
  caseEl.fields.querySelector("textarea").focus();
}

function closeCaseForm() {
  caseEl.form.hidden = true;
  caseEl.edit.hidden = false;
  caseEl.edit.focus();
}

function caseBody() {
  const body = { version: state.story.version };
  for (const [field, name] of CASE_FIELDS) {
    const entries = document.getElementById(`case-${field}`).value.split("\n").map((e) => e.trim()).filter(Boolean);
    const long = entries.find((e) => e.length > CASE_MAX_CHARS);
    if (long) throw new Error(`${name}: “${long.slice(0, 20)}…” has ${long.length} characters; at most ${CASE_MAX_CHARS} fit.`);
    if (entries.length > CASE_MAX_ENTRIES) throw new Error(`${name}: ${entries.length} entries; at most ${CASE_MAX_ENTRIES} fit.`);
    body[field] = entries;
  }
  return body;
}

// Saved with the story's version, like every change: a case file changed meanwhile (a
// passage added in another tab) is shown, with what was typed still in the editor.
async function putCase(body, done) {
  if (state.busy || !state.story) return;
  state.busy = true;
  updateButtons();
  try {
    render(await api("PUT", `/api/stories/${encodeURIComponent(state.story.id)}/case`, body));
    caseSay(done);
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 409 && !err.body.generating) {
      try { render(await api("GET", `/api/stories/${encodeURIComponent(state.story.id)}`)); } catch (e) { /* below */ }
      caseSay("Not saved: this story changed in another tab or window, and its case file is shown above. " +
              "Your changes are still in the editor: save again to keep them.", "error");
    } else if (err instanceof ApiError && err.status !== 422 && err.status !== 400) {
      await handleError(err);
    } else {
      caseSay(`Not saved: ${err.message}`, "error");
    }
    return false;
  } finally {
    state.busy = false;
    updateButtons();
  }
}

caseEl.edit.addEventListener("click", openCaseForm);
// The phone's jump to the case file (below the story there) opens it on the way.
document.getElementById("jump-case").addEventListener("click", () => { caseEl.drawer.open = true; });
caseEl.cancel.addEventListener("click", () => { caseSay(""); closeCaseForm(); });
caseEl.form.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape") { ev.preventDefault(); caseSay(""); closeCaseForm(); }
});
// Saves the editor's case file; while the model writes, says so and saves when it is done
// (withBusy runs state.casePending), with what the editor holds then.
async function saveCaseForm() {
  let body;
  try { body = caseBody(); } catch (err) { caseSay(`Not saved: ${err.message}`, "error"); return; }
  if (state.busy) {
    state.casePending = saveCaseForm;
    caseSay("The model is writing: your case file will be saved as soon as it finishes.");
    return;
  }
  if (await putCase(body, "Case file saved. The fields you changed stay as you wrote them.")) closeCaseForm();
}

caseEl.form.addEventListener("submit", (ev) => { ev.preventDefault(); saveCaseForm(); });
caseEl.refill.addEventListener("click", async () => {
  const auto = (state.story.case_file || {}).edited || [];
  if (await putCase({ version: state.story.version, auto }, "Filled in from the story again.")) caseEl.edit.focus();
});
if (window.matchMedia("(max-width: 760px)").matches) caseEl.drawer.open = false;  // on a phone: a tap away
