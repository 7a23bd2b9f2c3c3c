// Batplots page: editing a passage in place (loaded before app.js; plain script).
// Nothing is overwritten unseen: when another tab changed the same passage, its text is
// shown beside the editor with a choice (keep mine / take theirs).
"use strict";

// A save that meets only unrelated changes (another passage added elsewhere) is retried
// against the new version at most this many times.
const MAX_EDIT_SAVES = 3;

function editPassage(turn) {
  if (state.busy) return;
  const node = el.story.querySelector(`.turn[data-turn-id="${turn.id}"]`);
  if (!node) return;
  let base = turn.text;  // the text this edit replaces; a conflict shows any other
  const box = document.createElement("div");
  box.className = "passage-editor";
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", "Editing a passage");
  const id = `edit-${turn.id}`;
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = turn.author === "model" ? "Edit the model's passage (a blank line starts a new paragraph)"
                                              : "Edit your passage (a blank line starts a new paragraph)";
  const area = document.createElement("textarea");
  area.id = id;
  area.value = turn.text;
  const message = document.createElement("p");
  message.className = "editor-message";
  message.setAttribute("role", "alert");
  // No silent cut at the limit: the editor says so, and nothing typed or pasted is lost.
  let over = false;
  area.addEventListener("input", () => {
    const n = area.value.length;
    if (n > MAX_TURN_CHARS) {
      message.textContent = `This passage has ${n} characters; one passage holds at most ${MAX_TURN_CHARS}. ` +
        "Shorten it to save, or move the rest to the box below as a passage of its own.";
    } else if (over) {
      message.textContent = "";
    }
    over = n > MAX_TURN_CHARS;
  });
  const row = document.createElement("div");
  row.className = "row";
  const button = (text, cls) => {
    const b = document.createElement("button");
    b.type = "button"; b.className = `btn btn-small ${cls}`; b.textContent = text;
    return b;
  };
  const save = button("Save passage", "btn-blue");
  const cancel = button("Cancel", "");
  row.append(save, cancel);
  const conflict = document.createElement("div");
  conflict.className = "conflict";
  conflict.hidden = true;
  const conflictText = document.createElement("p");
  conflictText.setAttribute("role", "alert");  // read out at once, beside the editor
  const theirsBox = document.createElement("blockquote");
  theirsBox.className = "theirs";
  const conflictRow = document.createElement("div");
  conflictRow.className = "row";
  const keepMine = button("Keep mine", "btn-blue");
  const takeTheirs = button("Take theirs", "");
  conflictRow.append(keepMine, takeTheirs);
  conflict.append(conflictText, theirsBox, conflictRow);
  box.append(label, area, message, conflict, row);
  node.replaceWith(box);
  area.focus();

  const close = () => { render(state.story); focusTurn(turn.id); };
  const showConflict = (theirs) => {
    conflict.hidden = false;
    row.hidden = true;
    if (theirs === null) {
      conflictText.textContent = "This passage was removed in another tab or window. Your text is still in the box " +
        "above: copy it if you want it, then close the editor.";
      theirsBox.hidden = true;
      keepMine.hidden = true;
      takeTheirs.textContent = "Close";
    } else {
      conflictText.textContent = "This passage was changed in another tab or window. Their version is below. " +
        "Keep mine replaces it with your text; Take theirs drops your edit.";
      theirsBox.hidden = false;
      keepMine.hidden = false;
      theirsBox.replaceChildren(...paragraphNodes(theirs));
      takeTheirs.textContent = "Take theirs";
    }
    message.textContent = "";
    (theirs === null ? takeTheirs : keepMine).focus();
  };

  // Errors keep the editor open with the edited text: nothing typed is lost.
  const commit = async () => {
    if (state.busy) return;
    state.busy = true;
    updateButtons();
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          render(await api("PATCH", `/api/stories/${encodeURIComponent(state.story.id)}/turns/${turn.id}`,
                           { text: area.value, version: state.story.version }));
          say("Passage saved.");
          focusTurn(turn.id);
          return;
        } catch (err) {
          if (!(err instanceof ApiError && err.status === 409) || attempt >= MAX_EDIT_SAVES) throw err;
          state.story = await api("GET", `/api/stories/${encodeURIComponent(state.story.id)}`);
          const theirs = state.story.turns.find((t) => t.id === turn.id);
          if (!theirs || theirs.text !== base) {
            showConflict(theirs ? theirs.text : null);
            if (theirs) base = theirs.text;
            return;
          }
          // Only other passages changed: this one is as the editor found it, so saving replaces nothing unseen.
        }
      }
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) { await handleError(err); return; }
      message.textContent = err.message || String(err);
      area.focus();
    } finally {
      state.busy = false;
      updateButtons();
    }
  };
  save.addEventListener("click", commit);
  cancel.addEventListener("click", close);
  keepMine.addEventListener("click", () => { conflict.hidden = true; row.hidden = false; commit(); });
  takeTheirs.addEventListener("click", close);
  box.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") { ev.preventDefault(); close(); }
    else if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && ev.target === area) {
      ev.preventDefault();
      if (conflict.hidden) commit();
    }
  });
}
