"""Fuzz tier: seeded hostile files against every reader of the pack (issue 16)."""
