"""sagactl: run, watch, script and stress a choreographed saga over NATS JetStream."""

__version__ = "0.1.0"
