"""Reading the SAGA stream: the pull reader, per-sale histories, tail filters, traces, dead letters."""
