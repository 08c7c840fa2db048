"""The side-by-side benchmark behind `loadtests/bench.py`: the servers it starts, the clients
that measure them, the cases, and the report."""
