"""A running system: its processes (nats-server, participants), state directory, connections and logs."""
