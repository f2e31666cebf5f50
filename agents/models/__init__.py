"""Model builders that need no download (``tiny``)."""
