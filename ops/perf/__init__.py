"""Performance tools: the order-flow simulator (`backbone load`) and the pipeline benchmark
(`backbone bench`).

- flow.py: the seeded order flow (accounts, symbols, mid prices as random walks, the command mix);
- recorder.py: HDR histograms, outcomes and the per-second timeline of a run;
- drivers.py: sending the flow through StreamOrders or the unary SubmitOrder/CancelOrder;
- simulator.py: a whole run (its own system or a running one), the ramp, the digest, the check;
- plot.py: the PNG of a run; raw.py: the raw gRPC baselines; bench.py: the benchmark;
- system.py: a system of its own (embedded PostgreSQL and Redis, the four services).

The client uses the generated stubs directly (not the Decimal SDK), so its own CPU stays small: it
shares the machine with the system it measures.
"""
