"""Experiment (not part of the project): heartbeat RPC deadline = the lease (350 ms) instead of one
heartbeat interval (100 ms), beside the unchanged quorum mode and etcd, at once."""

import json
import os
import sys
import tempfile
from pathlib import Path

from chaos import toxiproxy
from node.client import false_alarms as fa
from node.client.bench import failover_samples, summary_ms
from node.launcher.cluster import LocalCluster, local_spec

env = {**os.environ, "BULLYPROOF_EXP_HB_DEADLINE_MS": "350"}
what, seconds, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
if what == "false-alarms":
    extra = [lambda root: fa.Ours("quorum", root / "q350", name="quorum-hb350", env=env)]
    r = fa.run(toxiproxy, Path("/usr/bin/etcd"), ["quorum"], list(fa.DEFAULT_LINKS), seconds, extra=extra)
else:
    r = {}
    for name, e in [("quorum", None), ("quorum-hb350", env)]:
        with tempfile.TemporaryDirectory() as d:
            c = LocalCluster(local_spec(5, "quorum", 100, 500), Path(d), env=e)
            c.start()
            try:
                c.wait_for_agreement(30, interval_s=0.01, rpc_timeout_s=0.2)
                s = failover_samples(c, int(seconds), 500)
                r[name] = summary_ms(s)
                print(name, r[name], file=sys.stderr)
            finally:
                c.stop()
Path(out).write_text(json.dumps(r, indent=2) + "\n")
