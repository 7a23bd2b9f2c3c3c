// Batplots page: where each model sentence comes closest to the training corpus, and
// why the Writer chose this take (loaded before app.js; plain script). A model turn's
// meta.provenance holds, per sentence, its longest span shared with the corpus, the
// episode and whether the copy guard had to let a copy through ("flagged"); meta.why
// says what the winning take had over the others. All text goes in via textContent.
"use strict";

function episodeName(p) {
  return p.episode || `an untitled episode (“${(p.passage || "").slice(0, 40)}…”)`;
}

function provenanceLine(p) {
  if (!p.episode && !p.passage) return "Nothing in the training episodes shares even two words in a row with this sentence.";
  const head = p.flagged
    ? `The copy guard let this through: ${p.words} words in a row come from the training episodes. `
    : "";
  return `${head}Closest episode: ${episodeName(p)} (${p.words} words in common: “${p.passage}”)`;
}

// One sentence's line in the popover: the closest episode by name, and the sentence with
// the words it shares with that episode marked.
function provenanceItem(p) {
  const li = document.createElement("li");
  if (!p.episode && !p.passage) { li.textContent = provenanceLine(p); return li; }
  if (p.flagged) li.className = "copied";
  const head = p.flagged ? `The copy guard let this through: ${p.words} words in a row come from the training episodes. ` : "";
  const name = document.createElement("cite");
  name.textContent = episodeName(p);
  const at = p.span ? p.text.indexOf(p.span) : -1;
  const sentence = document.createElement("q");
  if (at >= 0) {
    const mark = document.createElement("mark");
    mark.textContent = p.span;
    sentence.append(p.text.slice(0, at), mark, p.text.slice(at + p.span.length));
  } else {
    sentence.textContent = p.text;
  }
  li.append(`${head}Closest episode: `, name, `. ${p.words} words in a row are the same (marked): `, sentence);
  return li;
}

// The Writer's reason for its pick in a fan's words (the scores stay in the details).
function plainWhy(why) {
  return why.replace(/\s*\(score -?[\d.]+\)/, "")
    .replace(/the likeliest text \(mean log-probability[^)]*\)/, "the most natural-sounding wording")
    .replace("the best balance of names, length and likelihood", "the best balance of names, length and natural wording");
}

// What a rewritten sentence did wrong, in a fan's words (the Writer's check kinds).
const REWRITE_REASONS = { copy: "repeated a training episode word for word", "near-miss": "misspelt a name",
  long: "ran on far too long", "off-beat": "missed the beat asked for", junk: "was not a sentence of the show" };

// "While writing, the model rewrote 2 sentences: one repeated ...; one misspelt a name." or null.
function rewrittenLine(turn) {
  const chosen = ((turn.meta && turn.meta.candidates) || []).find((c) => c.chosen) || {};
  const redone = Array.isArray(chosen.resampled) ? chosen.resampled : [];
  if (!redone.length) return null;
  const reasons = redone.map((r) => `one ${REWRITE_REASONS[r.kind] || "broke one of the show's rules"}`);
  return `While writing, the model rewrote ${redone.length} sentence${redone.length === 1 ? "" : "s"} ` +
    `before you saw the final text: ${reasons.join("; ")}.`;
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

// A button beside a model passage and the popover it opens there: each sentence's
// closest episode, and why this take won. [] when there is nothing to show.
function provenanceParts(turn) {
  const prov = turnProvenance(turn);
  const why = turn.edited ? null : (turn.meta && turn.meta.why) || null;
  const redone = turn.edited ? null : rewrittenLine(turn);
  if (!prov && !why && !redone) return [];
  const copied = !!prov && prov.some((p) => p.flagged);
  const pop = document.createElement("div");
  pop.className = "prov-pop";
  pop.id = `prov-${turn.id}`;
  pop.hidden = true;
  pop.setAttribute("role", "note");
  const heading = document.createElement("p");
  heading.className = "prov-heading";
  heading.textContent = prov ? "Where this passage comes from" : "About this passage";
  pop.append(heading);
  if (prov) {
    const list = document.createElement("ol");
    list.append(...prov.map(provenanceItem));
    pop.append(list);
  }
  if (why && why !== "the only take") {
    const w = document.createElement("p");
    w.className = "prov-why";
    w.textContent = `Why this take: ${plainWhy(why)}.`;
    const more = document.createElement("details");
    more.className = "prov-tech";
    const summary = document.createElement("summary");
    summary.textContent = "Details for the curious";
    const raw = document.createElement("p");
    raw.textContent = `The Writer's own words: ${why}. The score adds up names, length, the show's rules and ` +
      "how likely the model found the words (mean log-probability per token).";
    more.append(summary, raw);
    pop.append(w, more);
  }
  if (redone) {
    const r = document.createElement("p");
    r.className = "prov-redone";
    r.textContent = redone;
    pop.append(r);
  }
  const b = document.createElement("button");
  b.type = "button";
  b.className = "prov-btn" + (copied ? " copied" : "");
  b.tabIndex = -1;  // the story's roving tab stop reaches it with the arrow keys
  b.textContent = copied ? "Copied! Closest episode" : "Closest episode";
  b.setAttribute("aria-label", copied ? "A sentence here copies a training episode: where from?"
                                      : "Closest episode: where this passage comes from");
  b.setAttribute("aria-expanded", "false");
  b.setAttribute("aria-controls", pop.id);
  const toggle = (open) => { pop.hidden = !open; b.setAttribute("aria-expanded", String(open)); };
  b.addEventListener("click", () => toggle(pop.hidden));
  b.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !pop.hidden) { ev.preventDefault(); toggle(false); }
  });
  return [b, pop];
}

// The header's plain words, and the technical detail for a click on "Details".
function guardPlain(guard) {
  if (!guard) return "";
  return guard.active ? "Sentences that repeat the training episodes are rewritten." : guard.note;
}

function guardDetail(guard) {
  if (!guard) return "";
  return guard.active ? `copy guard on (${guard.episodes} episodes indexed)` : `copy guard: ${guard.note}`;
}
