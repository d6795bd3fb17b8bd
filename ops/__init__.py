"""Running the service: log lines and request ids, Prometheus metrics, migrations, retention."""
