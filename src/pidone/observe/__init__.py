"""Metrics, /healthz and /readyz, and the HTTP server: they read snapshots only."""
