"""The benchmark harness behind `make bench`: ours against a ceiling and a naive reference."""
