"""Processing: the queue of ready movies, the worker pool, what runs in a worker, warm-up, gain session."""
