"""The one event loop, the log relay, readiness probes and sd_notify."""
