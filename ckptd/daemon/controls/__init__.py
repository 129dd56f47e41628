"""Operator controls the engine asks: the gate (pause, max_running, rate), the queues' control
files, priorities, schedules, retention."""
