"""Making training data: expert games, PGN to token streams, their diversity, board targets."""
