"""Exports and authorship as pure functions of a story dict (batplots.story.export)."""

from markdown_it import MarkdownIt

from batplots.story import export


def model_turn(text, original, edited=True):
    return {"author": "model", "text": text, "edited": edited,
            "meta": {"candidates": [{"chosen": False, "text": "A runner-up."}, {"chosen": True, "text": original}]}}


def test_authorship_says_what_happened_to_a_passage():
    original = "The Joker laughs at Robin from the Batmobile."
    assert export.author_label({"author": "user", "text": "Hi.", "edited": True}) == "You"
    assert export.author_label(model_turn(original, original, edited=False)) == "Model"
    assert export.author_label(model_turn("Then the Joker laughs at Robin, twice.", original)) == "Model, edited by you"
    assert export.author_label(model_turn("Alfred serves tea at Wayne Manor.", original)) == "You"  # nothing left
    # The provenance's sentences stand in for the original of a picked or older turn.
    picked = {"author": "model", "text": "Robin waits.", "edited": True,
              "meta": {"provenance": [{"text": "Robin waits by the door."}]}}
    assert export.author_label(picked) == "Model, edited by you"
    # Nothing kept to compare with: credited to the model, marked edited.
    unknown = {"author": "model", "text": "New.", "edited": True, "meta": {}}
    assert export.author_label(unknown) == "Model, edited by you"


def test_markdown_keeps_paragraphs_and_escapes_markdown_not_html():
    story = {"title": "Batman & Robin *strike*", "turns": [
        {"author": "user", "text": "First line\nsame paragraph.\n\n# Not a heading\n\n1. not a list", "edited": False},
        model_turn("Everything here is new.", "The Riddler riddles.")]}
    md = export.to_markdown(story)
    assert "&amp;" not in md and md.startswith("# Batman \\& Robin \\*strike\\*")
    html = MarkdownIt("commonmark").render(md)
    assert "<h1>Batman &amp; Robin *strike*</h1>" in html
    assert "<p><strong>You:</strong> First line same paragraph.</p>" in html
    assert "<p># Not a heading</p>" in html and "<p>1. not a list</p>" in html and "<ol>" not in html
    assert "<p><strong>You:</strong> Everything here is new.</p>" in html  # rewritten: the writer's, upright
    assert "[You] Everything here is new." in export.to_text(story)


def test_share_page_has_a_paragraph_per_passage_and_no_decoration():
    story = {"title": "T", "turns": [{"author": "user", "text": "One.\n\nTwo.", "edited": False},
                                     model_turn("The Joker laughs at Robin.", "The Joker laughs at Robin.", False)]}
    page = export.share_page(story)
    assert '<div class="turn user"><span class="visually-hidden">You: </span><p>One.</p><p>Two.</p></div>' in page
    assert '<div class="turn model"><span class="visually-hidden">Model: </span><p>The Joker' in page
    assert 'class="story plain"' in page and "sentence" not in page
