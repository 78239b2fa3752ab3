"""Test servers and harnesses shared by the test tiers."""
