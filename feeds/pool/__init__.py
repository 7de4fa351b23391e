"""The feed worker's connection pool: which broker connection carries which instrument
(``distribution``, a pure function), the clients kept true to its plans (``pool``) and the
in-process latest-tick table (``latest``)."""
