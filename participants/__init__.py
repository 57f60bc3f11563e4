"""The saga participants (sale, inventory, payment) and the runtime they share."""
