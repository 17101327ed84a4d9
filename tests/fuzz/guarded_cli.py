"""The bullyproof CLI with node.runtime.guard.DecodeGuard on every gRPC server it makes (test only).

node.channels.server() does not install the guard yet (that module is being changed for TLS in
another branch): this runs a node or a store as it will be once it does. Once channels installs it,
this adds nothing (it never adds a second guard).

    python tests/fuzz/guarded_cli.py node ...  |  python tests/fuzz/guarded_cli.py store ...
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import grpc  # noqa: E402

from node.runtime.guard import DecodeGuard  # noqa: E402

_server = grpc.aio.server


def _guarded_server(*args, interceptors=None, **kwargs):
    interceptors = list(interceptors or [])
    if not any(isinstance(i, DecodeGuard) for i in interceptors):
        interceptors.insert(0, DecodeGuard())
    return _server(*args, interceptors=interceptors, **kwargs)


grpc.aio.server = _guarded_server

from node.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
