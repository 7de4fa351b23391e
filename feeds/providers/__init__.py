"""Broker plug-ins. Each provider package has the same shape:

- ``codec``: sans-I/O bytes <-> typed events, both the client and the server side;
- ``client``: an asyncio client that owns one socket and knows the provider's limits;
- ``rest``: the rate-limited REST quote client (the L3 cache layer);
- ``simulator``: a local server speaking the real protocol, the embedded default.

Shared vocabulary lives beside them: ``ticks`` (the provider-independent Tick), ``errors``.
Nothing here imports Django.
"""
