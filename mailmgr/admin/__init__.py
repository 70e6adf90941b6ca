"""The admin HTTP listener: health probes and Prometheus metrics (issue 11 item 1)."""
