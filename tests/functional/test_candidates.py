"""CandidateSource contract, run against every implementation that can run here.

The in-process source runs for real. No Elasticsearch server runs on this machine, so the
Elasticsearch source talks, through the real elasticsearch-py client and its real transport, to
a node double (`DoubleNode`, an elastic_transport node class) that keeps the indexes in memory.
The double is honest: it records every request body and validates it against the parts of the
REST API and query DSL it implements (strict mappings, dense_vector dims and similarity, kNN
options, bool/term/terms filters, bulk NDJSON, alias actions), answering 400 like a real node
when a body is wrong, and it computes exact kNN with Elasticsearch's max_inner_product scoring.
Note: the 8/9 elasticsearch-py client does not talk to AWS OpenSearch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import numpy as np
import pytest
from elastic_transport import ApiResponseMeta, BaseNode, HttpHeaders
from elastic_transport._node._base import NodeApiResponse
from elasticsearch import Elasticsearch

from recloop.serving.candidates.base import CandidateQuery, CandidateSource
from recloop.serving.candidates.elasticsearch import ElasticsearchCandidates
from recloop.serving.candidates.inprocess import InProcessCandidates
from recloop.serving.features.sqlite import SQLiteFeatureStore
from recloop.serving.model import ServedModel, load_served_model
from recloop.serving.testing import fit_bundle, item_features

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
                headers=HttpHeaders(
                    {
                        "X-Elastic-Product": "Elasticsearch",
                        "Content-Type": "application/vnd.elasticsearch+json;compatible-with=9",
                    }
                ),
                duration=0.0,
                node=self.config,
            )
            return NodeApiResponse(meta, b"" if method == "HEAD" else json.dumps(payload).encode())

    return DoubleNode


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ServedModel:
    root = tmp_path_factory.mktemp("model")
    folder = fit_bundle(root / "bundle", n_users=60, n_items=45)
    catalogue = {i.item_id: i for i in item_features(45)}
    return load_served_model(folder, "7", catalogue)


@pytest.fixture
def cluster() -> Cluster:
    return Cluster()


@pytest.fixture
def es_source(cluster: Cluster, tmp_path: Path) -> ElasticsearchCandidates:
    store = SQLiteFeatureStore(tmp_path / "f.db")
    items = item_features(45)
    items[5] = items[5].__class__(**{**items[5].__dict__, "available": False})
    store.upsert_items(items)
    client = Elasticsearch("http://es.invalid:9200", node_class=double_node(cluster))
    return ElasticsearchCandidates(client, catalogue=store.get_items)


@pytest.fixture(params=["inprocess", "elasticsearch"])
def source(request: pytest.FixtureRequest, model: ServedModel) -> Iterator[CandidateSource]:
    made: CandidateSource = (
        InProcessCandidates()
        if request.param == "inprocess"
        else request.getfixturevalue("es_source")
    )
    made.publish(model)
    yield made


def user_vector(model: ServedModel, items: list[str]) -> np.ndarray:
    return model.user_vector(model.bundle.history_row(items))


def test_candidates_are_unique_valid_and_exclude_seen(
    source: CandidateSource, model: ServedModel
) -> None:
    seen = [model.index_of(i) for i in ("i0", "i3", "i6")]
    query = CandidateQuery(
        user_vector(model, ["i0", "i3", "i6"]),
        np.asarray(seen, dtype=np.int64),
        n=20,
        exclude=frozenset(int(i) for i in seen if i is not None),
    )
    found = source.candidates(model, query)
    assert 0 < len(found) <= 20
    assert len(set(found.items.tolist())) == len(found)
    assert not set(found.items.tolist()) & set(query.exclude)
    assert found.items.min() >= 0 and found.items.max() < model.n_items


def test_candidates_respect_the_category_filter(
    source: CandidateSource, model: ServedModel
) -> None:
    query = CandidateQuery(user_vector(model, ["i1"]), np.asarray([1]), n=10, category="drama")
    found = source.candidates(model, query)
    assert len(found) > 0
    assert all(int(i) % 3 == 2 for i in found.items)  # item i is of category i % 3


def test_candidates_follow_the_user_vector(source: CandidateSource, model: ServedModel) -> None:
    vector = user_vector(model, ["i0", "i3", "i6", "i9"])
    found = source.candidates(model, CandidateQuery(vector, np.asarray([0, 3, 6, 9]), n=10))
    action = sum(int(i) % 3 == 0 for i in found.items[:5])
    assert action >= 3, found.items


def test_similar_items_are_best_first_and_not_the_item(
    source: CandidateSource, model: ServedModel
) -> None:
    ids, scores = source.similar(model, 0, 5)
    assert len(ids) == 5 and 0 not in ids.tolist()
    assert np.all(np.diff(scores) <= 1e-6)
    assert sum(int(i) % 3 == 0 for i in ids) >= 3


def test_elasticsearch_publish_builds_a_versioned_index_and_flips_the_alias(
    es_source: ElasticsearchCandidates, cluster: Cluster, model: ServedModel, tmp_path: Path
) -> None:
    es_source.publish(model)
    index = es_source.index_name("7")
    assert len(cluster.indexes[index]["docs"]) == model.n_items
    assert cluster.aliases["recloop-items"] == {index}
    mapping = cluster.indexes[index]["mappings"]["properties"]["embedding"]
    assert mapping["dims"] == model.item_vectors.shape[1]  # type: ignore[union-attr]
    newer = load_served_model(fit_bundle(tmp_path / "b2", seed=3), "8")
    es_source.publish(newer)
    assert cluster.aliases["recloop-items"] == {es_source.index_name("8")}
    # Publishing again is idempotent: the count matches, nothing is re-sent.
    bulk_calls = sum(path == "/_bulk" for _, path, _ in cluster.requests)
    es_source.publish(newer)
    assert sum(path == "/_bulk" for _, path, _ in cluster.requests) == bulk_calls


def test_elasticsearch_queries_the_loaded_versions_index_with_filters(
    es_source: ElasticsearchCandidates, cluster: Cluster, model: ServedModel
) -> None:
    es_source.publish(model)
    query = CandidateQuery(
        user_vector(model, ["i2"]), np.asarray([2]), n=8, category="drama", exclude=frozenset({2})
    )
    found = es_source.candidates(model, query)
    method, path, text = cluster.requests[-1]
    assert method == "POST"
    assert path == f"/{es_source.index_name('7')}/_search"
    body = json.loads(text)
    assert body["knn"]["filter"]["bool"]["filter"] == [
        {"term": {"available": True}},
        {"term": {"categories": "drama"}},
    ]
    assert body["knn"]["filter"]["bool"]["must_not"] == [{"terms": {"item_index": [2]}}]
    assert 5 not in found.items.tolist()  # i5 is unavailable in the catalogue
    assert 2 not in found.items.tolist()
    # The double's exact kNN agrees with the model's own top scores among the allowed items.
    allowed = np.array([i for i in range(2, 45, 3) if i not in (2, 5)])
    expected = allowed[np.argsort(-model.score(query.user_vector, allowed))][:8]  # type: ignore[arg-type]
    assert found.items.tolist() == expected.tolist()


def test_the_double_rejects_what_elasticsearch_would(
    es_source: ElasticsearchCandidates, cluster: Cluster, model: ServedModel
) -> None:
    from elasticsearch import BadRequestError

    es_source.publish(model)
    with pytest.raises(BadRequestError):
        es_source.client.search(
            index=es_source.index_name("7"),
            knn={"field": "embedding", "query_vector": [0.0, 1.0], "k": 3, "num_candidates": 10},
        )
