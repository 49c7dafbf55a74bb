"""The frontier study: where the model transcends, by familiarity, and how compute moves it."""
