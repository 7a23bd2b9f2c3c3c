// Batplots page: the story as paragraphs with who wrote what, one tab stop for the whole
// story (arrow keys move between passages, Enter edits), and a view that follows the
// model's draft unless the reader scrolled away (loaded before app.js; plain script).
"use strict";

// An edited model passage is still the model's while a run of this many of its words is
// left (batplots.story.export.KEPT_RUN_WORDS says the same for the exports).
const KEPT_RUN_WORDS = 3;
const MODEL_NAME = "Model";

function words(text) { return text.toLowerCase().match(/[\p{L}\p{N}]+(?:'[\p{L}\p{N}]+)*/gu) || []; }

// The model's own text of a turn before any edit, or null when the turn kept none.
function modelOriginal(turn) {
  const meta = turn.meta || {};
  const chosen = (meta.candidates || []).find((c) => c.chosen && c.text);
  if (chosen) return chosen.text;
  const prov = meta.provenance || [];
  return prov.length ? prov.map((p) => p.text).join(" ") : null;
}

// "You", "Model", or "Model, edited by you"; a model passage rewritten until nothing of
// the model's text is left is the writer's.
function authorLabel(turn) {
  if (turn.author !== "model") return "You";
  if (!turn.edited) return MODEL_NAME;
  const original = modelOriginal(turn);
  if (original === null) return `${MODEL_NAME}, edited by you`;
  const ours = words(original), now = words(turn.text);
  const n = Math.min(KEPT_RUN_WORDS, ours.length, now.length);
  if (n === 0) return "You";
  const runs = new Set();
  for (let i = 0; i + n <= ours.length; i++) runs.add(ours.slice(i, i + n).join(" "));
  for (let i = 0; i + n <= now.length; i++) if (runs.has(now.slice(i, i + n).join(" "))) return `${MODEL_NAME}, edited by you`;
  return "You";
}

function paragraphs(text) {
  return text.split(/\n\s*\n/).map((p) => p.trim()).filter(Boolean);
}

function paragraphNodes(text) {
  return paragraphs(text).map((para) => { const p = document.createElement("p"); p.textContent = para; return p; });
}

// One passage: a paragraph block (role=button: Enter or a click edits it), and for a
// model passage its provenance button and popover beside it (provenance.js).
function turnNode(turn) {
  const label = authorLabel(turn);
  const byModel = label !== "You";
  const wrap = document.createElement("div");
  wrap.className = `turn ${byModel ? "model" : "user"}`;
  wrap.dataset.turnId = turn.id;
  const passage = document.createElement("div");
  passage.className = `passage ${byModel ? "model" : "user"}` + (turn.edited ? " edited" : "");
  passage.dataset.turnId = turn.id;
  passage.setAttribute("role", "button");
  passage.setAttribute("aria-roledescription", "passage");
  passage.setAttribute("aria-describedby", "story-keys");
  passage.tabIndex = -1;
  const who = document.createElement("span");
  who.className = "visually-hidden";
  who.textContent = `${label}: `;
  const text = document.createElement("div");
  text.className = "passage-text";
  const sentences = turn.author === "model" && !turn.edited ? provenanceSpans(turn) : null;
  if (sentences) {
    const p = document.createElement("p");
    p.append(...sentences);
    text.append(p);
  } else {
    text.append(...paragraphNodes(turn.text));
  }
  passage.append(who, text);
  wrap.append(passage);
  if (turn.author === "model") wrap.append(...provenanceParts(turn));
  return wrap;
}

// --- one tab stop, arrow keys inside (a roving tabindex) -------------------------------
function storyItems() {
  return [...el.story.querySelectorAll(".passage[role=button], .prov-btn")];
}

function setRoving(target) {
  const items = storyItems();
  const passages = items.filter((item) => item.classList.contains("passage"));
  const current = items.includes(target) ? target : passages[passages.length - 1];  // default: the last passage
  for (const item of items) item.tabIndex = item === current ? 0 : -1;
}

function focusTurn(turnId) {
  const passage = el.story.querySelector(`.passage[data-turn-id="${turnId}"]`);
  if (passage) { setRoving(passage); passage.focus(); }
  return !!passage;
}

function onStoryKey(ev) {
  const items = storyItems();
  const i = items.indexOf(ev.target);
  if (i < 0) return;  // an editor or a popover inside the story has its own keys
  const moves = { ArrowDown: i + 1, ArrowRight: i + 1, ArrowUp: i - 1, ArrowLeft: i - 1, Home: 0, End: items.length - 1 };
  if (ev.key in moves) {
    ev.preventDefault();
    const next = items[Math.max(0, Math.min(items.length - 1, moves[ev.key]))];
    setRoving(next);
    next.focus();
  } else if ((ev.key === "Enter" || ev.key === " ") && ev.target.classList.contains("passage")) {
    ev.preventDefault();
    const turn = state.story.turns.find((t) => String(t.id) === ev.target.dataset.turnId);
    if (turn) editPassage(turn);
  }
}

function onStoryClick(ev) {
  const passage = ev.target.closest(".passage[role=button]");
  if (!passage || !el.story.contains(passage)) return;
  const turn = state.story.turns.find((t) => String(t.id) === passage.dataset.turnId);
  if (turn) editPassage(turn);
}

// --- following the draft ---------------------------------------------------------------
// The view follows what the model is writing; a reader who scrolls it out of view is
// left alone until they scroll back to it.
const follow = { on: true, target: null };

function startFollowing(node) {
  follow.on = true;
  follow.target = node;
  keepInView();
}

function stopFollowing() { follow.target = null; }

function keepInView() {
  const node = follow.target;
  if (!follow.on || !node || !node.isConnected) return;
  node.scrollIntoView({ block: "nearest" });
  // On a phone the writing box sticks to the bottom of the screen: the line being written
  // goes above it, not under it.
  if (getComputedStyle(el.writeForm).position === "sticky") {
    const covered = node.getBoundingClientRect().bottom - el.writeForm.getBoundingClientRect().top;
    if (covered > 0) window.scrollBy(0, covered + 8);
  }
}

window.addEventListener("scroll", () => {
  const node = follow.target;
  if (!node || !node.isConnected) return;
  const r = node.getBoundingClientRect();
  follow.on = r.bottom > 0 && r.top < window.innerHeight;
}, { passive: true });
