"""Scripts that made the reference data in tests/data from other projects' own code, and what they share
with the tests."""
