"""`python -m bench`: the benchmarks on a real local cluster (bench/real.py)."""

from bench.real import main

raise SystemExit(main())
