"""framewatch benchmarks: times beside a floor measured in the same run (not tests)."""
