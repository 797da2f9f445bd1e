"""The whole system on one laptop: ``python -m local.run`` (``make run``).

- ``local.run``: the entry point (settings, moto, provisioning, servers, loops, signals);
- ``local.moto_server``: the embedded AWS emulator (moto server in a thread);
- ``local.rest``: the Chalice REST app served through ``chalice.local.LocalGateway``;
- ``local.ws_gateway``: a WebSocket gateway behaving like API Gateway (``$connect``,
  ``$default``, ``$disconnect`` events into the same Chalice handlers) that also
  serves the ``@connections`` management API;
- ``local.loops``: the tick loop and the SQS poller (the event source mapping).

Nothing here is packaged into Lambda.
"""
