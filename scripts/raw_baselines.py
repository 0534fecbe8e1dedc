"""Raw gRPC baselines on this machine (ops/perf/raw.py): a grpc.aio unary echo and a four-process relay.

    python scripts/raw_baselines.py --seconds 5

The benchmark (scripts/bench_pipeline.py) runs these first; this runs them alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ops.perf.raw import main

if __name__ == "__main__":
    sys.exit(main())
