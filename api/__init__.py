"""HTTP routes: deliveries, the read API, their parameters, cursors and tokens, and the hot-route table."""
