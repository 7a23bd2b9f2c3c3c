"""What a passage is and what the story says: the Writer, its checks, steering and ranking, the case file, lore, beats and conditioning."""
