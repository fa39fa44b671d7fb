"""The ``framewatch`` command line: :mod:`.cli` and one module per subcommand (top layer)."""
