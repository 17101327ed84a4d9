"""Benchmarks (not tests): numbers from real processes, beside etcd and against hostile clients.

    python -m bench ...            # real.py: cold start, failover, queries, watch, messages, figure 16
    bullyproof bench ...           # versus.py: bullyproof beside etcd, one command (results/bench)
    python -m bench.hostile ...    # hostile.py: client load against the leader's heartbeats (results/hostile)
    python -m bench.grpc_floor ... # grpc_floor.py: what Python gRPC alone costs per heartbeat (versus.py runs it)

Apart from the SDK (node.client), which holds only what a service needs. Above node/ and below chaos/
(chaos.showdown times failover with real.py's loop); see the layers in pyproject.toml.
"""
