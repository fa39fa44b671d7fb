"""framewatch engine: formats and numerics (arrays and paths in, results out)."""
