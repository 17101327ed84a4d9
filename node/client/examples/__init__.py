"""Example services built on node.client; run them with `python -m node.client.examples.<name>`."""
