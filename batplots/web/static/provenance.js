// Batplots page: where each model sentence comes closest to the training corpus
// (loaded before app.js; plain script). A model turn's meta.provenance holds, per
// sentence, its longest span shared with the corpus, the episode and whether the
// copy guard had to let a copy through ("flagged"). All text goes in via textContent.
"use strict";

function provenanceLine(p) {
  if (!p.episode) return "Nothing in the corpus shares even two words in a row with this sentence.";
  const head = p.flagged
    ? `The copy guard let this through: ${p.words} words in a row come from the corpus. `
    : "";
  return `${head}Closest in the corpus: ${p.episode} (${p.words} words in common: “${p.passage}”)`;
}

function turnProvenance(turn) {
  const prov = (turn.meta && turn.meta.provenance) || [];
  // An edited passage no longer has the sentences the provenance describes.
  if (!prov.length || turn.edited || prov.map((p) => p.text).join(" ") !== turn.text) return null;
  return prov;
}

// The sentences of a model turn as spans that show their provenance on hover, or
// null when the turn has none (older turns, an edited passage, the guard off).
function provenanceSpans(turn) {
  const prov = turnProvenance(turn);
  if (!prov) return null;
  const nodes = [];
  prov.forEach((p, i) => {
    if (i > 0) nodes.push(document.createTextNode(" "));
    const s = document.createElement("span");
    s.className = "sentence" + (p.flagged ? " copied" : "");
    s.textContent = p.text;
    s.title = provenanceLine(p);
    nodes.push(s);
  });
  return nodes;
}

// A small button after a model passage (tap on a phone, where there is no hover):
// show(message, kind) puts every sentence's provenance in the status line.
function provenanceButton(turn, show) {
  const prov = turnProvenance(turn);
  if (!prov) return null;
  const copied = prov.some((p) => p.flagged);
  const b = document.createElement("button");
  b.type = "button";
  b.className = "prov-btn" + (copied ? " copied" : "");
  b.textContent = copied ? "!" : "i";
  b.setAttribute("aria-label", copied ? "A sentence here copies the corpus: where from?"
                                      : "Where these sentences come closest to the corpus");
  b.addEventListener("click", (ev) => {
    ev.stopPropagation();  // a click on the passage itself opens the editor
    show(prov.map((p, i) => `Sentence ${i + 1}: ${provenanceLine(p)}`).join(" "), copied ? "error" : "info");
  });
  b.addEventListener("keydown", (ev) => ev.stopPropagation());
  return b;
}

function guardStatus(guard) {
  if (!guard) return "";
  return guard.active ? ` · copy guard on (${guard.episodes} episodes)` : ` · ${guard.note}`;
}
