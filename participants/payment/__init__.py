"""The payment service: charges the user for a sale whose stock is reserved, refunds a canceled one."""
