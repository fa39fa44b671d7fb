"""Intake: finding movies and mdocs, deciding they are complete, naming and grouping them into series."""
