"""The inventory service: reserves stock for a sale and gives it back when payment fails or the sale is canceled."""
