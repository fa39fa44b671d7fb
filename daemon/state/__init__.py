"""State that survives a restart: the SQLite journal, the instance lock, crash-test pause points."""
