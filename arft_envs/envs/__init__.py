"""One module per environment family."""
