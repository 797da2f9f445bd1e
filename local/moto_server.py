"""The embedded AWS emulator: moto's server in a thread of this process.

Like ``moto.server.ThreadedMotoServer``, but on a socket the caller bound, so a
busy port is an immediate, clear error (ThreadedMotoServer would wait forever
for a server that failed to start in its thread; werkzeug alone would exit the
process), and port 0 picks a free port.
"""
from __future__ import annotations

import logging
import socket
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

log = logging.getLogger("local.moto")


class MotoServer:
    def __init__(self, sock: socket.socket) -> None:
        """Serve moto on ``sock``: bound (not necessarily listening) by the caller."""
        app = DomainDispatcherApplication(create_backend_app)
        host, port = sock.getsockname()[:2]
        sock.listen(128)
        # With ``fd`` werkzeug neither binds nor exits the process on a busy port.
        self._server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler,
                                   fd=sock.fileno())
        sock.close()  # werkzeug serves a duplicate of it
        self._server.daemon_threads = True  # type: ignore[attr-defined]  # threaded=True: a ThreadingMixIn
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{str(self._server.server_address[0])}:{self.port}"

    def start(self) -> "MotoServer":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout)
        self._server.server_close()
