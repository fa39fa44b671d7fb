"""The torture run of `framewatch watch` (see torture.py; `python -m tests.torture --help`)."""
