"""``python -m tests.torture --seed N --restarts 20 ...`` (from the repository's top level)."""
from .run_torture import main

raise SystemExit(main())
