"""moto's ThreadedMotoServer in a process of its own: `python -m recloop.harness.motoserver`.

Prints the port it listens on (127.0.0.1, a free one), then serves until its stdin closes (the
demo ended or died). In its own process the server does not share an interpreter lock with the
demo's simulated users and pollers, as AWS's APIs share nothing with their clients.
"""

from __future__ import annotations

import logging
import sys


def main() -> int:
    from moto.server import ThreadedMotoServer

    # The server logs every request, and a traceback for each API moto lacks (the SDK's
    # Experiments lookups, which recloop treats as absent).
    for name in ("werkzeug", "moto", "flask.app"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    sys.stdin.read()  # until the parent closes it (or dies)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
