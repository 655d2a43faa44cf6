"""Wire servers: the AWS endpoint (SQS, SNS, Kinesis) over HTTP. See docs/server.md.

from tidelog.server import serve
serve("data", "127.0.0.1", 4566, "always")   # until SIGINT / SIGTERM

`serve` also runs the background workers (delivery streams, SQL
applications): `Workers`, server/workers.py.
"""

from tidelog.server.run import HOST_DEFAULT, PORT_DEFAULT, PortInUse, ServerThread, serve
from tidelog.server.workers import Workers

__all__ = ["HOST_DEFAULT", "PORT_DEFAULT", "PortInUse", "ServerThread", "Workers", "serve"]
