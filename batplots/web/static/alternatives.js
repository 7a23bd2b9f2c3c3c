// Batplots page: Alternatives (loaded before app.js; plain script). The takes of one
// batch stream side by side as the model writes them; Stop, Escape or Keep none cancel
// and leave the story exactly as it was, the typed text still in the box; picking a
// take saves the typed passage and the take together.
"use strict";

const ALT_TAKES = 3;
const ALT_LABELS = ["POW!", "ZAP!", "BIFF!", "WHAM!", "ZOWIE!"];

function altCard(i) {
  const card = document.createElement("div");
  card.className = "alt-card streaming";
  const h = document.createElement("h4");
  h.textContent = ALT_LABELS[i % ALT_LABELS.length];
  const note = document.createElement("p");
  note.className = "alt-note";
  const p = document.createElement("p");
  p.className = "alt-text";
  const pick = document.createElement("button");
  pick.type = "button";
  pick.className = "btn btn-small btn-red";
  pick.textContent = `Use take ${i + 1}`;
  pick.hidden = true;
  card.append(h, note, p, pick);
  return { card, note, text: p, pick, streamed: "" };
}

async function alternatives() {
  hideAlternatives();
  await withBusy(async () => {
    const typed = el.text.value;
    checkTyped(typed);
    if (!typed.trim() && !state.story.turns.length) {
      throw new Error("The story is empty: write its first sentence or two, then press Alternatives.");
    }
    const cards = Array.from({ length: ALT_TAKES }, (_, i) => altCard(i));
    el.altGrid.replaceChildren(...cards.map((c) => c.card));
    el.altWhy.textContent = "";
    el.altHeading.textContent = `The model is writing ${ALT_TAKES} takes…`;
    el.altSection.hidden = false;
    el.altSection.setAttribute("aria-busy", "true");
    startFollowing(el.altSection);
    state.stopped = typed.trim() ? "Stopped. Nothing was added; your text is still in the box."
                                 : "Stopped. Nothing was added.";
    say(`The model is writing ${ALT_TAKES} takes side by side… (Escape stops)`, "busy");
    const body = { version: state.story.version, n: ALT_TAKES };
    if (typed.trim()) body.text = typed;
    let result = null, failure = null;
    state.abort = new AbortController();
    updateButtons();
    try {
      await streamEvents(`/api/stories/${encodeURIComponent(state.story.id)}/alternatives`, body, (event, data) => {
        const card = cards[data.take];
        if ((event === "piece" || event === "rewind") && card) {
          card.streamed = event === "piece" ? card.streamed + data.text : data.text;
          card.text.textContent = card.streamed.trimStart();
          keepInView();
        } else if (event === "done") result = data;
        else if (event === "error") failure = new ApiError(data.status || 500, data.message, data);
      }, state.abort.signal);
    } finally {
      state.abort = null;
      stopFollowing();
      el.altSection.removeAttribute("aria-busy");
    }
    if (failure) throw failure;
    if (!result) throw new ConnectionLost();  // the stream ended with neither the takes nor an error
    finishAlternatives(cards, result, typed);
  });
}

function finishAlternatives(cards, result, typed) {
  el.altHeading.textContent = "Pick a continuation";
  cards.forEach((c, i) => {
    c.card.classList.remove("streaming");
    const cand = result.candidates.find((x) => x.take === i);
    if (!cand) {
      const same = result.candidates.find((x) => x.text === c.streamed.trim());
      c.note.textContent = same ? `Same text as take ${same.take + 1}.`
                                : "Left out: it ran much longer than the others or ended without a complete sentence.";
      c.card.classList.add("left-out");
      return;
    }
    c.text.textContent = cand.text;
    if (cand.chosen) { c.note.textContent = "The model's pick"; c.card.classList.add("chosen"); }
    else if (cand.refilled) c.note.textContent = "Written again: the first try ended without a complete sentence " +
      "or repeated another take.";
    c.pick.hidden = false;
    c.pick.setAttribute("aria-label", `Use take ${i + 1}: ${cand.text.slice(0, 60)}`);
    c.pick.addEventListener("click", () => pickAlternative(cand, typed));
  });
  const again = result.candidates.filter((x) => x.refilled).length;
  if (result.why && result.why !== "the only take") {
    el.altWhy.textContent = `The model's pick: ${plainWhy(result.why)}.` + (again
      ? ` ${again === 1 ? "The take" : `The ${again} takes`} written again came afterwards and ${again === 1 ? "was" : "were"} not compared.`
      : "");
  }
  say("Pick the take you like best, or Keep none (Escape).");
  const first = el.altGrid.querySelector("button:not([hidden])");
  if (first) first.focus();
}

function hideAlternatives() {
  el.altSection.hidden = true;
  el.altGrid.replaceChildren();
}

// Keep none (also Escape): cancel takes still being written; the story stays as it was.
function keepNone() {
  if (state.abort) { state.abort.abort(); return; }  // reported as stopped by withBusy
  hideAlternatives();
  say(el.text.value.trim() ? "Kept none. The story is as it was; your text is still in the box."
                           : "Kept none. The story is as it was.");
  el.text.focus();
}

async function pickAlternative(cand, typed) {
  await withBusy(async () => {
    const body = { text: cand.text, author: "model", seed: cand.seed, version: state.story.version };
    if (typed.trim()) body.user_text = typed;
    render(await api("POST", `/api/stories/${encodeURIComponent(state.story.id)}/turns`, body));
    if (el.text.value === typed) { el.text.value = ""; updateCount(); }  // saved: only now is it safe to clear
    hideAlternatives();
    say(typed.trim() ? "Added your passage and the take. Your turn!" : "Added. Your turn!");
    refreshList().catch(handleError);  // the drawer catches up; the pen is back at once
  });
  el.text.focus();
}
