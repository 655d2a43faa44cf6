"""The web console, /metrics and /health of `tidelog serve` (docs/console.md).

`Console` is an ASGI app that the endpoint (server/app.py) hands every
request for which `handles(path)` is true: /console..., /metrics, /health.
It is a thin adapter over the public engine API, as the AWS handlers are.
"""

from tidelog.server.console.web import Console, handles

__all__ = ["Console", "handles"]
