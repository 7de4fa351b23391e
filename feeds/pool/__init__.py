"""The feed worker's connection pool: which broker connection carries which instrument
(``distribution``) and the in-process latest-tick table (``latest``)."""
