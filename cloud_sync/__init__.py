"""Everything between a gateway and the central service.

- ``cloud_sync.schemas``: the versioned wire schema both ends share.
- ``cloud_sync.outbox``: what the sync client needs from a gateway's outbox (a protocol).
- ``cloud_sync.client``: the sync client that drains the outbox to the central API.
- ``cloud_sync.provision``: a gateway claims its credential with a one-time code.
- ``cloud_sync.central``: the central API service (FastAPI).
"""
