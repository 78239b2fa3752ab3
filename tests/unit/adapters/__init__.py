"""Unit tests for adapters/."""
