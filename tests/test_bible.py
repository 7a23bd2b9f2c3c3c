"""The show's bible: each rule on sentences that break it and on ones that must pass, and
the Writer resampling, ranking and eval counting by it (a scripted model: beside the point)."""

from batplots.measure import storyeval
from batplots.model.engine import Settings
from batplots.model.engine.base import Continuation
from batplots.model.weights import ADAPTERS_DIR
from batplots.story.bible import Bible, dangling, identity_slips
from batplots.story.lore import Lore, load_lore
from batplots.story.ranking import score_take, why
from batplots.story.take import take_seeds
from batplots.story.writer import Writer
from tests.test_writer import Scripted, script_for

LORE = Lore({"Batman": 200, "Robin": 120, "Gotham": 50, "Penguin": 60, "Joker": 60, "Batmobile": 30, "Batarang": 9},
            villains={"Penguin": {"count": 60, "aliases": ["Penguin", "Oswald Cobblepot"]},
                      "Joker": {"count": 60, "aliases": ["Joker", "Clown Prince of Crime"]}},
            gadgets={"Batmobile": {"count": 30}, "Batarang": {"count": 9}})
STORY = "Lord Ffogg and his sister Lady Peasoup plan to steal the crown jewels in the London fog."


def rules(sentence, story=STORY, lore=LORE, **case):
    return [str(b) for b in Bible(story, lore, case.get("villains", ())).breaks(sentence)]


def test_a_hero_beside_his_own_secret_identity_is_a_slip_unless_the_sentence_says_how():
    assert identity_slips("Batman, Robin, and Bruce Wayne race to the Batcave.")[0].detail == "Bruce Wayne beside Batman"
    assert identity_slips("Robin calls Dick Grayson for help.")[0].detail == "Dick Grayson beside Robin"
    assert identity_slips("Barbara and Batgirl share a cup of tea.")
    for fine in ("Bruce and Dick slide down the Batpoles and emerge as Batman and Robin.",
                 "Commissioner Gordon calls Bruce Wayne, who is secretly Batman.",
                 "Bruce Wayne changes into Batman.", "Batman and Robin race off.",
                 "Commissioner Gordon phones Batman."):  # Gordon is not Barbara
        assert identity_slips(fine) == [], fine


def test_a_villain_the_story_never_named_does_not_walk_in():
    assert rules("The Penguin steps out of the fog with his umbrella.") == ["walk-in (Penguin)"]
    assert rules("The Clown Prince of Crime laughs.") == ["walk-in (Joker)"]  # by an alias too
    assert rules("Lord Ffogg laughs.") == []
    # Named by the story, or the writer's case file: at home.
    assert rules("The Penguin laughs.", story=STORY + " Oswald Cobblepot escapes from prison.") == []
    assert rules("The Penguin laughs.", villains=["The Penguin"]) == []
    assert rules("The Penguin laughs.", lore=Lore()) == []  # no lore, no villains to know


def test_bat_words_the_show_never_coined_are_breaks():
    assert rules("Batman reaches for the Batplasma and the Batbrain.") == ["bat-word (Batplasma)",
                                                                        "bat-word (Batbrain)"]
    assert rules("Robin throws two Batarangs from the Batmobile's roof.") == []  # known, with endings
    assert rules("Batman slides down the Batpole.", story="Batman slides down the Batpole to the car.") == []
    assert rules("The bats fly at Batman.") == []


def test_a_sentence_ending_on_a_word_no_sentence_ends_on_dangles():
    assert dangling("The Batbrain and Batgirl have been .")[0].detail == "space before the full stop"
    assert dangling("Lady Peasoup hides the loot in the fog machine of the.")[0].detail == "ends on 'the'"
    assert dangling("Robin wonders what they have been.")[0].detail == "ends on 'been'"
    assert dangling("The Penguin waddles toward her.") == [] and dangling("The walls are closing in.") == []
    assert dangling("Batman smiles.") == [] and dangling("Holy haberdashery, Batman!") == []


def test_the_shipped_lore_knows_its_villains_and_gadgets():
    lore = load_lore(ADAPTERS_DIR / "batman66")
    assert rules("The Riddler leaves a riddle.", lore=lore) == ["walk-in (Riddler)"]
    assert rules("Batman fires the Batzooka from the Batmobile.", lore=lore) == []


def test_the_writer_resamples_a_sentence_that_breaks_the_bible_and_says_which_rule():
    writer = Writer(Scripted(["The Penguin steps out of the fog.", "Lord Ffogg tips his hat to the Queen."]),
                    lore=LORE, takes=1)
    take = writer.stream(STORY, Settings(seed=0, sentences=1, copy_limit=0))
    for _ in take:
        pass
    assert take.result.sentences == ["Lord Ffogg tips his hat to the Queen."]
    resampled = take.result.candidates[0]["resampled"]
    assert resampled[0]["kind"] == "walk-in" and resampled[0]["names"] == ["walk-in (Penguin)"]


def test_ranking_counts_what_still_breaks_a_rule_and_why_says_so():
    texts = ["The Joker arrives at the London fog.", "Lord Ffogg laughs at the crown jewels."]
    # Every sample but take 1's first says the same walk-in (a stubborn model): take 0's
    # resamples all fail, it keeps its least bad sentence, and the ranking must drop it.
    script = [texts[0]] * 1000
    script[take_seeds(3, 2)[1] % 1000] = texts[1]
    stubborn = Scripted(script)
    result = Writer(stubborn, lore=LORE, takes=2).run(STORY, Settings(seed=3, sentences=1, copy_limit=0))
    assert result.text.strip() == texts[1]
    loser = [c for c in result.candidates if not c["chosen"]][0]
    assert loser["rule_breaks"] == ["walk-in (Joker)"]
    assert "breaks no rule of the show (another take: walk-in (Joker))" in result.why
    parts = score_take(STORY, Continuation(text=" " + texts[0], sentences=[texts[0]], settings=Settings()), [-1.0], LORE)
    assert parts["rule_breaks"] == ["walk-in (Joker)"]
    assert "breaks no rule" not in why({**parts, "rule_breaks": []}, [{**parts, "rule_breaks": []}])


def test_eval_counts_rule_breaks_per_100_passages_by_kind():
    def write(story, settings, beat, writer_text):
        text = "The Joker laughs. Batman, Robin and Bruce Wayne have been ."
        return Continuation(text=" " + text, sentences=["The Joker laughs.", "Batman, Robin and Bruce Wayne have been ."],
                            settings=settings)

    passages = storyeval.measure(write, ["Lord Ffogg strikes.", "Batman waits."], [], Settings(sentences=2),
                                 LORE.cast, LORE.vocabulary, lore=LORE)
    assert passages[0].rule_breaks == ["walk-in (Joker)", "identity (Bruce Wayne beside Batman)",
                                       "dangling (space before the full stop)"]
    run = storyeval.metrics(passages, None, 2)
    assert run["rule_breaks_per_100"] == 300.0 and run["rule_breaks_per_100_walk-in"] == 100.0
    assert run["rule_breaks_per_100_bat-word"] == 0.0
    assert "| rules of the show broken, per 100 passages | 300.0 |" in storyeval.format_table({"run": run})


def test_he_for_she_is_a_break_by_the_corpus_or_the_writer():
    lore = load_lore(ADAPTERS_DIR / "batman66")
    # The corpus's own pronouns, counted when the lore is built.
    assert lore.villains["Catwoman"]["pronoun"] == "she" and lore.villains["Joker"]["pronoun"] == "he"
    story = "Madame Mirage, a stage magician, announces that she will make the golden idol vanish."
    assert rules("Catwoman laughs as he escapes.", story=story, lore=lore) == ["walk-in (Catwoman)",
                                                                              "pronoun (he for Catwoman)"]
    assert rules("Madame Mirage bows as he takes the idol.", story=story, lore=lore) == ["pronoun (he for Mirage)"]
    for fine in ("Madame Mirage bows as she takes the idol.",
                 "Madame Mirage hands Robin the idol and he runs.",  # two characters: not hers to say
                 "Madame Mirage steals her own show."):
        assert rules(fine, story=story, lore=lore) == [], fine


def test_a_question_threat_or_trap_the_writer_set_up_gets_an_answer():
    from batplots.story.threads import answers, open_thread

    trap = open_thread("The Riddler strikes. Batman and Robin are tied to the hands of a giant clock.")
    assert trap.kind == "trap" and "clock" in trap.words
    assert answers(trap, "Batman uses his Batarang to jam the clock's gears.")
    assert answers(trap, "Batman and Robin escape from the trap.")  # the escape beat
    assert not answers(trap, "Meanwhile, Commissioner Gordon eats a sandwich at headquarters.")
    question = open_thread("Lady Peasoup smiles. Who stole the crown jewels?")
    assert question.kind == "question" and answers(question, "Lord Ffogg hides the stolen jewels in his teapot.")
    threat = open_thread("The Weatherman warns that a blizzard will bury Gotham City by midnight.")
    assert threat.kind == "threat" and answers(threat, "The blizzard starts at eleven.")
    assert open_thread("Batman and Robin drive home.") is None and open_thread("") is None


def test_ranking_prefers_the_take_that_takes_up_the_trap_and_says_so():
    story = STORY + " Lord Ffogg ties Batman and Robin to a giant teapot over a roaring fire."
    texts = ["Lady Peasoup counts the crown jewels in the London fog.",
             "Batman swings the teapot's lid loose with his utility belt."]
    result = Writer(Scripted(script_for(7, texts)), lore=LORE, takes=2).run(story, Settings(seed=7, sentences=1,
                                                                                               copy_limit=0))
    assert result.text.strip() == texts[1]
    assert result.candidates[0]["answers"] and result.candidates[0]["thread"] == "trap"
    assert "takes up your trap" in result.why


def test_one_villain_as_two_people_is_an_identity_slip():
    assert rules("The Joker and the Clown Prince of Crime rob the bank.", story="The Joker strikes.") == [
        "identity (Clown Prince of Crime beside Joker)"]
    lore = load_lore(ADAPTERS_DIR / "batman66")
    assert rules("Freeze tells Mr. Freeze to melt the rink.", story="Mr. Freeze escapes.", lore=lore) == [
        "identity (Mr. Freeze beside Freeze)"]
    for fine in ("The Joker, also known as the Clown Prince of Crime, laughs.",
                 "The Joker laughs, and later that night the Joker strikes again."):
        assert rules(fine, story="The Joker strikes.") == [], fine


def test_a_caught_villain_does_not_act_freely_until_an_escape():
    story = STORY + " Scotland Yard arrests Lord Ffogg and takes him away in a police van."
    lore = load_lore(ADAPTERS_DIR / "batman66")
    assert rules("Lord Ffogg steals the crown jewels.", story=story, lore=lore) == [
        "status (Ffogg caught, yet steals)"]  # the writer's own name word
    for fine in ("Lord Ffogg escapes from his cell and steals the crown jewels.",  # the escape told
                 "Lord Ffogg, now in jail, plots his revenge.",  # acting from his cell
                 "Lady Peasoup steals the crown jewels."):  # his sister is free
        assert rules(fine, story=story, lore=lore) == [], fine
    escaped = story + " Lady Peasoup breaks Lord Ffogg out of jail."
    assert rules("Lord Ffogg steals the crown jewels.", story=escaped, lore=lore) == []


def test_a_character_the_story_sent_away_needs_a_reason_to_be_here():
    lore = load_lore(ADAPTERS_DIR / "batman66")
    story = "Aunt Harriet is away in Europe, and the Riddler leaves a riddle at Wayne Manor."
    assert rules("Aunt Harriet pours Bruce a cup of tea.", story=story, lore=lore) == [
        "status (Aunt Harriet away, yet here)"]
    assert rules("Aunt Harriet returns from Europe and pours Bruce a cup of tea.", story=story, lore=lore) == []
    assert rules("Bruce reads a postcard from Aunt Harriet.", story=story, lore=lore) == []


# A story of the writer's, then the model's passage that brought in "Batwing" and "Shard".
WRITER_TURN = "The Glassblower and his henchman Shard tiptoe into the Gotham Planetarium."
MODEL_TURN = "Batwing, a masked stranger, watches from the rafters as Shard pockets the lens."
INVENTED_STORY = WRITER_TURN + " " + MODEL_TURN


def invented(sentence, writer_text=WRITER_TURN, story=INVENTED_STORY, **kw):
    from batplots.story import names as nameslib

    names = None if writer_text is None else nameslib.names(writer_text)
    return [str(b) for b in Bible(story, LORE, writer_names=names, **kw).breaks(sentence)
            if b.rule == "invented-lead"]


def test_a_name_the_model_invented_does_not_come_back_as_a_lead():
    assert invented("Batwing leads the Glassblower's henchmen into the dome.") == ["invented-lead (Batwing)"]
    assert invented("Batwing, grinning, quietly pockets the lens.") == ["invented-lead (Batwing)"]
    for fine in ("The Glassblower and Shard melt the telescope.",  # the writer's own names
                 "Batman and Robin race to the Planetarium.",  # the lore's
                 "A new guard, Mortimer, locks the door.",  # new here: not a repeat yet
                 "Robin spots Batwing's cape in the rafters.",  # named, but not the one who acts
                 "Batwing's gloves lie on the floor.",  # an owner, not an actor
                 "Batman flies to the Planetarium as well."):
        assert invented(fine) == [], fine
    # The writer took Batwing up in a turn of his own: no longer the model's invention.
    assert invented("Batwing bows.", writer_text=WRITER_TURN + " Batwing turns out to be Shard's brother.",
                    story=INVENTED_STORY + " Batwing turns out to be Shard's brother.") == []
    # Who wrote what unknown: nothing counts as invented.
    assert invented("Batwing leads the henchmen.", writer_text=None) == []
    # Brought in by this passage's first sentence (earlier: the story before it): no repeat yet.
    assert invented("Batwing bows.", story=INVENTED_STORY, earlier=WRITER_TURN) == []
    # A lore that knows no villain cannot tell the show's names from the model's: off (the
    # Joker a model passage brought in would read as its invention, and every take be resampled).
    joker = INVENTED_STORY + " The Joker laughs."
    assert [b for b in Bible(joker, Lore(), writer_names=set()).breaks("The Joker robs the bank.")
            if b.rule == "invented-lead"] == []


def test_the_brief_takes_the_writers_names_from_his_turns_and_edited_case_fields():
    from batplots.story.brief import brief_for

    case = {"villains": ["The Glassblower"], "henchmen": ["Shard", "Batwing"], "guests": ["Mortimer"],
            "edited": ["guests"]}
    brief = brief_for(case, writer_text=WRITER_TURN)
    assert {"Glassblower", "Shard", "Mortimer"} <= brief.writer_names and "Batwing" not in brief.writer_names
    assert brief.henchmen == ("Shard", "Batwing") and brief_for(case).writer_names is None


def test_the_writer_resamples_an_invented_lead_when_it_knows_who_wrote_what():
    texts = ["Batwing laughs at the Glassblower.", "The Glassblower melts the great lens."]
    writer = Writer(Scripted(texts), lore=LORE, takes=1)
    take = writer.stream(INVENTED_STORY, Settings(seed=0, sentences=1, copy_limit=0), writer_text=WRITER_TURN)
    for _ in take:
        pass
    assert take.result.sentences == [texts[1]]
    assert take.result.candidates[0]["resampled"][0]["names"] == ["invented-lead (Batwing)"]
    # Without the writer's turns the Writer cannot tell, and keeps the first sample.
    assert writer.run(INVENTED_STORY, Settings(seed=0, sentences=1, copy_limit=0)).sentences == [texts[0]]


def test_eval_counts_status_slips_and_invented_leads_per_100_passages():
    stories = [{"villain": "Glassblower", "turns": [WRITER_TURN, "Batman and Robin arrest Shard and take him away."]}]
    said = iter([MODEL_TURN, "Batwing laughs as Shard robs the Planetarium."])

    def write(story, settings, beat, writer_text):
        text = next(said)
        return Continuation(text=" " + text, sentences=[text], settings=settings)

    passages = storyeval.measure(write, [], stories, Settings(sentences=1), LORE.cast, LORE.vocabulary, lore=LORE)
    # The first time a Bat-word coinage; once in the story, the bible's next rule takes over.
    assert passages[0].rule_breaks == ["bat-word (Batwing)"]
    assert passages[1].rule_breaks == ["status (Shard caught, yet robs)", "invented-lead (Batwing)"]
    run = storyeval.metrics(passages, None, 1)
    assert run["rule_breaks_per_100_status"] == 50.0 and run["rule_breaks_per_100_invented-lead"] == 50.0
    assert "| ... invented-lead | 50.0 |" in storyeval.format_table({"run": run})
