"""The study: protocol, tuning, execution (local or Dask) and run records."""
