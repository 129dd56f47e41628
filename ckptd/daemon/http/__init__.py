"""The daemon's read-only HTTP side: Prometheus ``/metrics`` and the dashboard."""
