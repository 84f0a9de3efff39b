"""A MongoDB wire-protocol double on loopback: no DocumentDB or MongoDB server can run here.

The real pymongo driver connects to it over TCP and speaks the real protocol (the OP_QUERY
handshake, then OP_MSG commands with their document sequences); the data lives in mongomock, so
filters, sorts, limits, upserts and duplicate keys behave as MongoDB's. It implements the
commands recloop sends (hello, ping, createIndexes, find, insert, update, delete, endSessions)
and answers any other with MongoDB's "no such command" error, so a new call shows up as a
failure, not a silent success. `stop()` closes the port and every open connection (the driver
sees the cluster go away); `start()` listens again on the same port with the same data.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct
import threading
from datetime import UTC, datetime
from typing import Any

import bson
import mongomock
from bson.codec_options import CodecOptions
from bson.int64 import Int64

_OP_REPLY, _OP_QUERY, _OP_MSG = 1, 2004, 2013
_MORE_TO_COME = 1 << 1
_CHECKSUM = 1 << 0
_OPTIONS = CodecOptions(tz_aware=True, tzinfo=UTC)


class MongoDouble:
    """A single-node "cluster" on 127.0.0.1 (use `uri`, which sets directConnection)."""

    def __init__(self) -> None:
        self.client = mongomock.MongoClient(tz_aware=True)
        self.port = 0
        self.commands: list[str] = []
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> MongoDouble:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    # ---- transport ------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed by stop()
                return
            with self._lock:
                self._connections.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                header = _read(conn, 16)
                length, request_id, _, opcode = struct.unpack("<iiii", header)
                body = _read(conn, length - 16)
                reply = self._handle(opcode, body)
                if reply is not None:
                    conn.sendall(_message(request_id, *reply, next(self._ids)))
        except (OSError, ConnectionError):
            pass
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.close()

    def _handle(self, opcode: int, body: bytes) -> tuple[int, bytes] | None:
        if opcode == _OP_QUERY:  # the legacy handshake: flags, collection, skip, return, query
            end = body.index(b"\0", 4)
            query = bson.decode(body[end + 9 :][: _bson_len(body[end + 9 :])], _OPTIONS)
            doc = bson.encode(self._command(query))
            return _OP_REPLY, struct.pack("<iqii", 0, 0, 0, 1) + doc
        if opcode != _OP_MSG:
            raise ConnectionError(f"unsupported opcode {opcode}")
        (flags,) = struct.unpack("<I", body[:4])
        sections = body[4 : len(body) - 4] if flags & _CHECKSUM else body[4:]
        command: dict[str, Any] = {}
        at = 0
        while at < len(sections):
            kind = sections[at]
            at += 1
            if kind == 0:
                size = _bson_len(sections[at:])
                command.update(bson.decode(sections[at : at + size], _OPTIONS))
                at += size
            else:  # kind 1: a document sequence (insert's documents, update's updates)
                (size,) = struct.unpack("<i", sections[at : at + 4])
                chunk = sections[at + 4 : at + size]
                name_end = chunk.index(b"\0")
                name = chunk[:name_end].decode()
                docs = chunk[name_end + 1 :]
                command[name] = list(bson.decode_all(docs, _OPTIONS))
                at += size
        reply = bson.encode(self._command(command))
        if flags & _MORE_TO_COME:
            return None
        return _OP_MSG, struct.pack("<I", 0) + b"\0" + reply

    # ---- commands -------------------------------------------------------------------------

    def _command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        name = next(iter(cmd))
        self.commands.append(name)
        db = self.client[cmd.get("$db", "admin")]
        try:
            return {**self._run(name, cmd, db), "ok": 1.0}
        except mongomock.OperationFailure as exc:
            return {"ok": 0.0, "errmsg": str(exc), "code": exc.code or 8}

    def _run(self, name: str, cmd: dict[str, Any], db: Any) -> dict[str, Any]:
        if name in {"hello", "isMaster", "ismaster"}:
            # No logicalSessionTimeoutMinutes: the driver sends no sessions, as to DocumentDB
            # without them; no topologyVersion: the driver polls instead of streaming.
            return {
                "helloOk": True,
                "isWritablePrimary": True,
                "ismaster": True,
                "maxBsonObjectSize": 16 * 1024 * 1024,
                "maxMessageSizeBytes": 48_000_000,
                "maxWriteBatchSize": 100_000,
                "localTime": datetime.now(UTC),
                "minWireVersion": 0,
                "maxWireVersion": 17,
                "readOnly": False,
            }
        if name in {"ping", "endSessions"}:
            return {}
        collection = db[cmd[name]] if isinstance(cmd[name], str) else None
        if name == "createIndexes" and collection is not None:
            for spec in cmd["indexes"]:
                options = {k: v for k, v in spec.items() if k not in {"key", "v"}}
                collection.create_index(list(spec["key"].items()), **options)
            return {"numIndexesBefore": 1, "numIndexesAfter": 1 + len(cmd["indexes"])}
        if name == "find" and collection is not None:
            cursor = collection.find(cmd.get("filter", {}), cmd.get("projection"))
            if cmd.get("sort"):
                cursor = cursor.sort(list(cmd["sort"].items()))
            if cmd.get("limit"):
                cursor = cursor.limit(abs(int(cmd["limit"])))
            ns = f"{db.name}.{collection.name}"
            return {"cursor": {"firstBatch": list(cursor), "id": Int64(0), "ns": ns}}
        if name == "insert" and collection is not None:
            return self._insert(collection, cmd)
        if name == "update" and collection is not None:
            return self._update(collection, cmd)
        if name == "delete" and collection is not None:
            n = 0
            for spec in cmd["deletes"]:
                if spec.get("limit", 0) == 1:
                    n += collection.delete_one(spec["q"]).deleted_count
                else:
                    n += collection.delete_many(spec["q"]).deleted_count
            return {"n": n}
        raise mongomock.OperationFailure(f"no such command: '{name}'", code=59)

    @staticmethod
    def _insert(collection: Any, cmd: dict[str, Any]) -> dict[str, Any]:
        errors, n = [], 0
        for index, doc in enumerate(cmd["documents"]):
            try:
                collection.insert_one(doc)
                n += 1
            except mongomock.DuplicateKeyError as exc:
                errors.append({"index": index, "code": 11000, "errmsg": str(exc)})
                if cmd.get("ordered", True):
                    break
        return {"n": n, **({"writeErrors": errors} if errors else {})}

    @staticmethod
    def _update(collection: Any, cmd: dict[str, Any]) -> dict[str, Any]:
        n = modified = 0
        upserted = []
        for index, spec in enumerate(cmd["updates"]):
            operators = any(key.startswith("$") for key in spec["u"])
            if spec.get("multi"):
                result = collection.update_many(spec["q"], spec["u"], upsert=spec.get("upsert"))
            elif operators:
                result = collection.update_one(spec["q"], spec["u"], upsert=spec.get("upsert"))
            else:
                result = collection.replace_one(spec["q"], spec["u"], upsert=spec.get("upsert"))
            if result.upserted_id is not None:
                upserted.append({"index": index, "_id": result.upserted_id})
                n += 1
            else:
                n += result.matched_count
                modified += result.modified_count
        return {"n": n, "nModified": modified, **({"upserted": upserted} if upserted else {})}


def _read(conn: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = conn.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("peer closed")
        chunks += chunk
    return bytes(chunks)


def _bson_len(data: bytes) -> int:
    return int(struct.unpack("<i", data[:4])[0])


def _message(response_to: int, opcode: int, body: bytes, request_id: int) -> bytes:
    return struct.pack("<iiii", 16 + len(body), request_id, response_to, opcode) + body
