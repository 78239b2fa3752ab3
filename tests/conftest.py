"""Shared fixtures. Test servers live in tests/support/."""
