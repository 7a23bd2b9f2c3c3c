"""The show's text: scraping the wiki into episodes, the corpus index and the copy guard."""
