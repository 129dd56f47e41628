"""The daemon's numbers and how they are shown: counters, snapshots, dropped messages, Prometheus
``/metrics`` and the dashboard."""
