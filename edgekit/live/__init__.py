"""The live view (``edgekit run --serve``): the state the loop writes (``state``: frames, figures,
counters, and the sink that fills them), and the HTTP server that reads it (``server``, with the
page, ``page``, and ``/metrics``, ``prometheus``). The state never imports the server."""
