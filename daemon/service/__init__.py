"""The wired daemon and its loop, and the service around it: notify, metrics, disk guard, events."""
