"""Model backends: the protocol the engine calls, and the backends that implement it."""
