"""Per-request extensions (personas, RAG, tools, sessions), registered by name."""
