"""The pipeline benchmark: `backbone bench` (ops/perf/bench.py), runnable from a checkout.

    python scripts/bench_pipeline.py                 # about four minutes; the last line is JSON
    python scripts/bench_pipeline.py --seconds 3     # shorter phases

Raw gRPC baselines on this machine (a grpc.aio unary echo; four processes relaying batches of 100
orders through streams), then Backbone end to end on a system of its own (unary SubmitOrder; StreamOrders
with every trade settled in the ledger; p99 at half that rate), then `backbone check`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ops.perf.bench import main

if __name__ == "__main__":
    sys.exit(main())
