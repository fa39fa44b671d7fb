"""Configuration: the TOML file and the processing options table."""
