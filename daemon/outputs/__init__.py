"""Outputs: the growing stacks, tables, plots, drift log and quality flags of each series."""
