"""Chaos harness: Toxiproxy-wired clusters, nemeses, workload, history and checkers."""
