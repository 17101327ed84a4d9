"""bullyproof node: the pure election core (node.core), the gRPC runtime, the fenced store and the CLI."""
