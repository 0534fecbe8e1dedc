"""The order-flow simulator: `backbone load` (ops/perf/simulator.py), runnable from a checkout.

    python scripts/load_orders.py                                   # a system of its own, 1,000/s for 10 s
    python scripts/load_orders.py --ramp --plot load.png            # step the rate up to the knee
    python scripts/load_orders.py --deterministic --seed 7          # same seed, same trades and digest
    python scripts/load_orders.py --target 127.0.0.1:50051 --admin-key KEY

`python scripts/load_orders.py --help` lists every option.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ops.perf.simulator import main

if __name__ == "__main__":
    sys.exit(main())
