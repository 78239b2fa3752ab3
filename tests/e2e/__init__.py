"""End-to-end tests: the real server on a free port, driven by the official SDK."""
