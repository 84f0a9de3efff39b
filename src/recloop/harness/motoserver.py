"""moto's ThreadedMotoServer in a process of its own: `python -m recloop.harness.motoserver`.

Prints the port it listens on (127.0.0.1, a free one), then serves until its stdin closes (the
demo ended or died). In its own process the server does not share an interpreter lock with the
demo's simulated users and pollers, as AWS's APIs share nothing with their clients.
"""

from __future__ import annotations

import logging
import sys


def _constant_time_shard_ends() -> None:
    """moto 5's Kinesis shard finds its first and last sequence numbers by copying every key
    (`list(self.records.keys())[-1]`), once per record put: a PutRecords of 500 into a shard
    holding 100,000 records copies 50 million keys, and the serving task's event sink backs up
    after a few minutes. The records are an insertion-ordered dict, so the ends are read
    directly here; what the API returns is unchanged. (An emulator's cost, not recloop's.)"""
    from moto.kinesis.models import Shard

    def first(self: Shard) -> int:
        return next(iter(self.records), 0)

    def last(self: Shard) -> int:
        return next(reversed(self.records), 0)

    Shard.get_min_sequence_number = first  # type: ignore[method-assign]
    Shard.get_max_sequence_number = last  # type: ignore[method-assign]


def main() -> int:
    from moto.server import ThreadedMotoServer

    _constant_time_shard_ends()

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
