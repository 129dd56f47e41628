"""The pools that run handlers: threads, child processes, an event loop."""
