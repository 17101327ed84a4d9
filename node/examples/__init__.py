"""Example services built on node.sdk; run them with `python -m node.examples.<name>`."""
