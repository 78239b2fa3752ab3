"""Unit tests for proxy/."""
