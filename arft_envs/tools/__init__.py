"""Tools an environment runs for the model: a sandboxed interpreter and search backends."""
