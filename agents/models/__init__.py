"""Model builders that need no download (``tiny``), and what arft knows about each VLM
family (``families``)."""
