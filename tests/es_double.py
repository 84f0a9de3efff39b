"""An Elasticsearch double for the tests: no Elasticsearch server can run on this machine.

`Cluster` keeps indexes in memory and is honest: it records every request body and validates
it against the parts of the REST API and query DSL recloop uses (strict mappings, dense_vector
dims and similarity, kNN options, bool/term/terms filters, bulk NDJSON, alias actions),
answering 400 like a real node when a body is wrong, and it computes exact kNN with
Elasticsearch's max_inner_product scoring. The real elasticsearch-py client reaches it either
through `double_node` (an elastic_transport node class, no socket) or over real HTTP on
loopback through `ClusterServer`, which can also be taken down and brought back on its port.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

import numpy as np
from elastic_transport import ApiResponseMeta, BaseNode, HttpHeaders
from elastic_transport._node._base import NodeApiResponse

# What a 9.x node sends back; the client refuses a server that does not say it is Elasticsearch.
PRODUCT_HEADERS = {
    "X-Elastic-Product": "Elasticsearch",
    "Content-Type": "application/vnd.elasticsearch+json;compatible-with=9",
}

SIMILARITIES = {"cosine", "dot_product", "l2_norm", "max_inner_product"}
KNN_KEYS = {"field", "query_vector", "k", "num_candidates", "filter", "similarity", "boost"}


class BadRequest(Exception):
    pass


class Cluster:
    """In-memory indexes, aliases and a log of every request."""

    def __init__(self) -> None:
        self.indexes: dict[str, dict[str, Any]] = {}
        self.aliases: dict[str, set[str]] = {}
        self.requests: list[tuple[str, str, Any]] = []

    def handle(self, method: str, target: str, body: bytes | None) -> tuple[int, Any]:
        path, _, query = target.partition("?")
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        params = parse_qs(query)
        text = (body or b"").decode()
        self.requests.append((method, path, text))
        try:
            return self._route(method, parts, params, text)
        except BadRequest as exc:
            return 400, {"error": {"type": "parsing_exception", "reason": str(exc)}, "status": 400}

    def _route(self, method: str, parts: list[str], params: Any, text: str) -> tuple[int, Any]:
        if not parts:
            return 200, {"version": {"number": "9.0.0"}, "tagline": "You Know, for Search"}
        if parts == ["_bulk"]:
            return self._bulk(text)
        if parts == ["_aliases"]:
            return self._update_aliases(json.loads(text))
        if parts[0] == "_alias":
            return self._get_alias(parts[1])
        index = parts[0]
        if len(parts) == 1 and method == "HEAD":
            return (200 if index in self.indexes else 404), {}
        if len(parts) == 1 and method == "PUT":
            return self._create(index, json.loads(text))
        if index not in self.indexes:
            return 404, {"error": {"type": "index_not_found_exception"}, "status": 404}
        if parts[1] == "_count":
            return 200, {"count": len(self.indexes[index]["docs"])}
        if parts[1] == "_refresh":
            return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
        if parts[1] == "_search":
            return self._search(index, json.loads(text))
        raise BadRequest(f"no handler for {method} /{'/'.join(parts)}")

    def _create(self, index: str, body: dict[str, Any]) -> tuple[int, Any]:
        if index in self.indexes:
            return 400, {"error": {"type": "resource_already_exists_exception"}, "status": 400}
        props = body["mappings"]["properties"]
        for name, spec in props.items():
            if spec["type"] == "dense_vector":
                if not isinstance(spec.get("dims"), int) or not 0 < spec["dims"] <= 4096:
                    raise BadRequest(f"{name}: dims must be 1..4096")
                if spec.get("similarity") not in SIMILARITIES:
                    raise BadRequest(f"{name}: unknown similarity {spec.get('similarity')}")
        self.indexes[index] = {"mappings": body["mappings"], "docs": {}}
        return 200, {"acknowledged": True, "index": index}

    def _bulk(self, text: str) -> tuple[int, Any]:
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        items = []
        for action, source in zip(lines[::2], lines[1::2], strict=True):
            ((op, meta),) = action.items()
            if op not in {"index", "create"}:
                raise BadRequest(f"unexpected bulk action {op}")
            index = self.indexes[meta["_index"]]
            self._check_doc(index["mappings"], source)
            index["docs"][meta["_id"]] = source
            items.append({op: {"_index": meta["_index"], "_id": meta["_id"], "status": 201}})
        return 200, {"errors": False, "took": 1, "items": items}

    @staticmethod
    def _check_doc(mappings: dict[str, Any], doc: dict[str, Any]) -> None:
        props = mappings["properties"]
        if mappings.get("dynamic") == "strict" and set(doc) - set(props):
            raise BadRequest(f"strict mapping: unknown fields {set(doc) - set(props)}")
        for name, spec in props.items():
            if spec["type"] == "dense_vector" and len(doc[name]) != spec["dims"]:
                raise BadRequest(f"{name} has {len(doc[name])} dims, mapping says {spec['dims']}")

    def _get_alias(self, name: str) -> tuple[int, Any]:
        owners = self.aliases.get(name, set())
        if not owners:  # what Elasticsearch answers for an alias no index holds
            return 404, {"error": f"alias [{name}] missing", "status": 404}
        return 200, {index: {"aliases": {name: {}}} for index in owners}

    def _update_aliases(self, body: dict[str, Any]) -> tuple[int, Any]:
        for action in body["actions"]:
            ((op, spec),) = action.items()
            if op not in {"add", "remove"} or set(spec) != {"index", "alias"}:
                raise BadRequest(f"bad alias action {action}")
            owners = self.aliases.setdefault(spec["alias"], set())
            owners.add(spec["index"]) if op == "add" else owners.discard(spec["index"])
        return 200, {"acknowledged": True}

    def _search(self, index_name: str, body: dict[str, Any]) -> tuple[int, Any]:
        index = self.indexes[index_name]
        knn = body["knn"]
        if set(knn) - KNN_KEYS or not {"field", "query_vector", "k"} <= set(knn):
            raise BadRequest(f"bad knn keys {sorted(knn)}")
        spec = index["mappings"]["properties"][knn["field"]]
        if spec["type"] != "dense_vector" or len(knn["query_vector"]) != spec["dims"]:
            raise BadRequest("query_vector does not match the dense_vector field")
        if not knn["k"] <= knn.get("num_candidates", knn["k"]) <= 10_000:
            raise BadRequest("num_candidates must be >= k and <= 10000")
        docs = [d for d in index["docs"].values() if self._matches(index, knn.get("filter"), d)]
        query = np.asarray(knn["query_vector"], dtype=np.float64)
        scored = []
        for doc in docs:
            dot = float(np.dot(query, doc[knn["field"]]))
            # Elasticsearch's max_inner_product score: positive and order-preserving.
            scored.append((1 / (1 - dot) if dot < 0 else dot + 1, doc))
        scored.sort(key=lambda pair: -pair[0])
        includes = body.get("_source", {}).get("includes")
        hits = [
            {
                "_index": index_name,
                "_id": doc["item_id"],
                "_score": score,
                "_source": {k: v for k, v in doc.items() if includes is None or k in includes},
            }
            for score, doc in scored[: min(knn["k"], body.get("size", 10))]
        ]
        return 200, {"hits": {"total": {"value": len(hits), "relation": "eq"}, "hits": hits}}

    def _matches(
        self, index: dict[str, Any], query: dict[str, Any] | None, doc: dict[str, Any]
    ) -> bool:
        if query is None:
            return True
        ((kind, spec),) = query.items()
        props = index["mappings"]["properties"]
        if kind == "bool":
            if set(spec) - {"filter", "must", "must_not", "should"}:
                raise BadRequest(f"bad bool keys {sorted(spec)}")
            positive = spec.get("filter", []) + spec.get("must", [])
            return all(self._matches(index, q, doc) for q in positive) and not any(
                self._matches(index, q, doc) for q in spec.get("must_not", [])
            )
        if kind in {"term", "terms"}:
            ((field, value),) = spec.items()
            if field not in props:
                raise BadRequest(f"{kind} on unmapped field {field}")
            values = value if kind == "terms" else [value]
            if kind == "terms" and not isinstance(value, list):
                raise BadRequest("terms needs a list")
            have = doc[field] if isinstance(doc[field], list) else [doc[field]]
            return any(v in have for v in values)
        raise BadRequest(f"unsupported query {kind}")


def double_node(cluster: Cluster) -> type[BaseNode]:
    class DoubleNode(BaseNode):
        _CLIENT_META_HTTP_CLIENT = ("dn", "1.0")

        def perform_request(  # type: ignore[override]
            self,
            method: str,
            target: str,
            body: bytes | None = None,
            headers: Any = None,
            request_timeout: Any = None,
        ) -> NodeApiResponse:
            status, payload = cluster.handle(method, target, body)
            meta = ApiResponseMeta(
                status=status,
                http_version="1.1",
                headers=HttpHeaders(PRODUCT_HEADERS),
                duration=0.0,
                node=self.config,
            )
            return NodeApiResponse(meta, b"" if method == "HEAD" else json.dumps(payload).encode())

    return DoubleNode


class ClusterServer:
    """A Cluster over real HTTP on 127.0.0.1; `stop()` refuses connections, `start()` answers
    again on the same port (the cluster's data survives, as a restarted node's would)."""

    def __init__(self, cluster: Cluster, port: int = 0) -> None:
        self.cluster = cluster
        self.port = port
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ClusterServer:
        cluster = self.cluster

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                status, payload = cluster.handle(self.command, self.path, body)
                data = b"" if self.command == "HEAD" else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in PRODUCT_HEADERS.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return None

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
