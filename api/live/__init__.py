"""Live updates over server-sent events: the hub that reads each live log once per process
(:mod:`api.live.hub`), the light SSE response that carries one subscription
(:mod:`api.live.stream`), and the routes (:mod:`api.live.endpoints`)."""
