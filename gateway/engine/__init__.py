"""The run engine: the run state machine, the tool-call loop, cancel, expiry and recovery."""

from gateway.engine.engine import RunEngine

__all__ = ["RunEngine"]
