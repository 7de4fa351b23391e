"""The layered caches of the latest market state (L1 in the worker, L2 in Redis; issue 6)."""
