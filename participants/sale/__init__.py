"""The sale service: takes sales, and finalizes or cancels them as the saga's events arrive."""
