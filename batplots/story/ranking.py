"""Ranking a passage's takes: a transparent score, its parts, and one line on why.

What a fan notices first weighs most: no rule of the show's bible broken (the
wrong villain, a hero beside his own secret identity, an invented Bat-word, a jailed
villain robbing a bank, a name the model invented taking over, a dangling end:
batplots.story.bible), the question, threat or trap the writer set up
taken up (batplots.story.threads), the story's names kept (the villain above
all), no mangled names, sentences of the show's length, nothing copied, the beat the
writer asked for, then the model's own likelihood. Pure functions.
"""

from __future__ import annotations

from batplots.story import beats as beatslib
from batplots.story import names as nameslib
from batplots.story import storyread
from batplots.story.bible import Bible
from batplots.story.threads import answers, open_thread
from batplots.story.brief import Brief
from batplots.model.engine.base import Continuation
from batplots.story.lore import Lore

# A longer sentence is resampled: the corpus averages ~24 words a sentence and a fan
# reads 50+ as sprawl.
MAX_SENTENCE_WORDS = 45
# Ranking: sentence length near this is best; SLACK words either side cost nothing.
TARGET_WORDS, LENGTH_SLACK = 22, 8
# Ranking weights (score_take): what a fan notices first weighs most.
WEIGHT_OWN_NAME = 1.5  # each of the writer's own names kept (at most MAX_NAMES_COUNTED)
WEIGHT_CAST_NAME = 0.5  # each stock-cast name of the story kept
# The writer's own name the story uses most (in a Batman story, as a rule, its villain).
WEIGHT_LEAD_NAME = 2.0
MAX_NAMES_COUNTED = 2
WEIGHT_NEAR_MISS = 3.0
WEIGHT_LENGTH = 0.1  # per word past the slack, averaged over sentences
WEIGHT_LOGPROB = 1.0  # mean log-probability per token
WEIGHT_COPY = 3.0  # each sentence the copy guard let through
# The beat the writer asked for, played by the passage's first sentence (beats.label).
WEIGHT_BEAT = 2.0
# Each rule of the show's bible a sentence still breaks after its resamples: a fan reads
# the wrong villain walking in as worse than a lost name.
WEIGHT_RULE = 3.0
# The question, threat or trap the writer's last sentence set up, taken up by the take's
# first sentence (batplots.story.threads).
WEIGHT_ANSWER = 3.5  # above two kept names: a fan reads a dropped trap as losing the thread
# How much the story explains the take (batplots.story.pmi: log-probability per token with
# the story minus without it). PMI_TRIAL_WEIGHT was on trial; a blind reading of the 12
# openings (of 30) where it changed the 1.5B's winner preferred PMI's passage in 9
# (docs/measurements/pmi-2026-12-02), so it is served. 0 would mean not computed.
PMI_TRIAL_WEIGHT = 3.0
WEIGHT_PMI = PMI_TRIAL_WEIGHT

def score_take(story: str, result: Continuation, logprobs: list[float], lore: Lore,
               brief: Brief = Brief(), bible: Bible | None = None, pmi: float | None = None,
               pmi_weight: float = WEIGHT_PMI) -> dict:
    """A take's score and its parts (shown in generate --json and each turn's meta).
    The brief's case-file names count as the story's; its villain is the lead name.
    bible: the show's rules for this story and brief (the Writer's, built once a passage);
    built here when not given. pmi: how much the story explains the take (None: not
    scored), worth pmi_weight a nat per token."""
    story_names = storyread.story_names(story) | brief.names
    own = (story_names - lore.cast) | brief.villain_names
    text = " ".join(result.sentences)
    text_names = nameslib.names(text)
    own_kept = sorted(own & text_names)
    lead = story_lead(story, lore, brief)
    lead_kept = lead is not None and lead in text_names
    played = beatslib.label(result.sentences[0]) if result.sentences else None
    beat_kept = brief.beat is not None and played == brief.beat
    cast_kept = sorted((story_names & lore.cast) & nameslib.names(text))
    misses = nameslib.near_misses(text, story_names | lore.cast, lore.vocabulary)
    lengths = [nameslib.words(s) for s in result.sentences] or [0]
    over = sum(max(0, abs(n - TARGET_WORDS) - LENGTH_SLACK) for n in lengths) / len(lengths)
    mean_lp = sum(logprobs) / len(logprobs) if logprobs else 0.0
    copies = len(result.flags)
    bible = bible if bible is not None else Bible(story, lore, brief.villains, brief.names, brief.henchmen,
                                                  brief.writer_names)
    broken = [str(b) for s in result.sentences if s != result.narrator for b in bible.breaks(s)]
    thread = open_thread(story)
    answered = thread is not None and bool(result.sentences) and answers(thread, result.sentences[0])
    parts = {
        "own_names": own_kept, "lead_name": lead if lead_kept else None, "cast_names": cast_kept,
        "beat": played,
        "near_misses": [m for m, _ in misses],
        "words": lengths, "mean_logprob": round(mean_lp, 3), "copies": copies, "rule_breaks": broken,
        "thread": thread.kind if thread else None, "answers": answered,
        "pmi": None if pmi is None else round(pmi, 3),
        "pmi_points": 0.0 if pmi is None else round(pmi_weight * pmi, 3),
    }
    score = (WEIGHT_OWN_NAME * min(len(own_kept), MAX_NAMES_COUNTED) + WEIGHT_LEAD_NAME * lead_kept
             + WEIGHT_BEAT * beat_kept
             + WEIGHT_CAST_NAME * min(len(cast_kept), MAX_NAMES_COUNTED)
             - WEIGHT_NEAR_MISS * len(misses) - WEIGHT_LENGTH * over + WEIGHT_LOGPROB * mean_lp
             - WEIGHT_COPY * copies - WEIGHT_RULE * len(broken) + WEIGHT_ANSWER * answered
             + parts["pmi_points"])
    if not result.sentences:
        score -= 100.0  # nothing usable (the cap cut every sentence)
    return {"score": round(score, 3), **parts}


def story_lead(story: str, lore: Lore, brief: Brief = Brief()) -> str | None:
    """The passage's lead name: the case file's villain (brief.lead), else lead_name."""
    return brief.lead or lead_name(story, lore)


def pmi_decided(winner: dict, others: list[dict]) -> bool:
    """Whether the winner won on how much the story explains it: without the pmi points
    another take would have scored higher."""
    if not winner.get("pmi_points"):
        return False
    return any(o["score"] - o.get("pmi_points", 0.0) > winner["score"] - winner["pmi_points"] for o in others)


def lead_name(story: str, lore: Lore) -> str | None:
    """The writer's own name the story uses most (first used, on a tie), or None."""
    cast = lore.cast  # a property that builds the set: once, not once a word
    counts = {word: n for word, n in storyread.name_counts(story).items() if word not in cast}
    return max(counts, key=lambda w: counts[w]) if counts else None


def why(winner: dict, others: list[dict], beat: str | None = None) -> str:
    """One line: what the winning take had that the others lacked."""
    if not others:
        return "the only take"
    reasons = []
    if not winner.get("rule_breaks") and any(o.get("rule_breaks") for o in others):
        broke = sorted({b for o in others for b in o.get("rule_breaks", ())})
        reasons.append("breaks no rule of the show (another take: " + ", ".join(broke[:3]) + ")")
    if winner.get("answers") and any(not o.get("answers") for o in others):
        reasons.append(f"takes up your {winner['thread']}")
    if beat is not None and winner.get("beat") == beat and any(o.get("beat") != beat for o in others):
        reasons.append(f"plays the beat you asked for ({beatslib.BEAT_LABELS[beat]})")
    if winner.get("lead_name") and any(not o.get("lead_name") for o in others):
        reasons.append(f"names {winner['lead_name']}")
    if winner["own_names"] and sum(1 for o in others if not o["own_names"]):
        reasons.append(f"keeps your name{'s' if len(winner['own_names']) > 1 else ''} "
                       + ", ".join(winner["own_names"]))
    if not winner["near_misses"] and any(o["near_misses"] for o in others):
        reasons.append("no mangled names")
    if not winner["copies"] and any(o["copies"] for o in others):
        reasons.append("copies nothing")
    if max(winner["words"]) <= MAX_SENTENCE_WORDS < max(max(o["words"]) for o in others):
        reasons.append("no overlong sentence")
    if pmi_decided(winner, others):
        # Against the takes it beat on that alone (a third take may be explained more).
        base = winner["score"] - winner["pmi_points"]
        rivals = [o["pmi"] for o in others if o.get("pmi") is not None and o["score"] - o["pmi_points"] > base]
        reasons.append(f"the story explains it better ({winner['pmi']:+.2f} nats a token"
                       + (f" against {max(rivals):+.2f})" if rivals else ")"))
    if not reasons:
        reasons.append("the likeliest text (mean log-probability "
                       f"{winner['mean_logprob']:.2f} against "
                       f"{max(o['mean_logprob'] for o in others):.2f})"
                       if winner["mean_logprob"] >= max(o["mean_logprob"] for o in others)
                       else "the best balance of names, length and likelihood")
    return f"best of {len(others) + 1} takes (score {winner['score']:.2f}): " + "; ".join(reasons)
