"""CandidateSource on Elasticsearch: one index per model version, dense_vector kNN with filters.

A serving process queries the index of the model version it has loaded, so vectors and index
never disagree during a swap; the alias (`<prefix>`) points at the champion's index for other
readers. Publishing builds the index with the bulk helper, checks the document count, then flips
the alias in one atomic `_aliases` call.

Only families with item vectors are indexed (ALS, BPR). Item-kNN, EASE, popularity and recent
popularity have no vectors to search: their candidates are, by design, the model's own lists
(neighbour lists and popularity, computed at load) served in process (`Placement.IN_PROCESS`).
A cluster that cannot be reached at publish time never rejects a model: the version is served
from its own lists, marked degraded (`Placement.PENDING`), and published again when the
cluster answers (the Runtime's backend monitor retries).

Client support: the elasticsearch-py 8/9 client talks to Elasticsearch 8.x and 9.x (9.x needs
the 9 client or compatibility headers). It refuses servers that are not Elasticsearch, so it
does not talk to AWS OpenSearch Service; use Elastic Cloud or self-managed Elasticsearch.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from elasticsearch import Elasticsearch, NotFoundError, helpers

from recloop.serving.candidates.base import CandidateQuery, Candidates, Origin, Placement, merge
from recloop.serving.errors import BackendError
from recloop.serving.features.base import ItemFeatures
from recloop.serving.model import ServedModel

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^a-z0-9_-]+")
# kNN explores this many candidates per shard for each one returned (recall vs cost).
_NUM_CANDIDATES_FACTOR = 4
_MAX_NUM_CANDIDATES = 10_000
# Seconds a publication waits for the cluster's first answer: a cluster that is down must not
# hold a model load (and so the service's start) for the bulk timeout.
_PUBLISH_PING_TIMEOUT = 2.0

Catalogue = Callable[[Sequence[str]], dict[str, ItemFeatures]]


class ElasticsearchCandidates:
    """CandidateSource on an Elasticsearch cluster (`elasticsearch+https://host:9200`)."""

    name = "elasticsearch"
    blocking_io = True

    def __init__(
        self,
        client: Elasticsearch,
        alias: str = "recloop-items",
        catalogue: Catalogue | None = None,
    ) -> None:
        self.client = client
        self.alias = alias
        self.catalogue = catalogue or (lambda ids: {})
        self._indexed: set[str] = set()  # versions whose index holds every item

    @classmethod
    def from_url(
        cls, url: str, timeout_ms: int = 50, catalogue: Catalogue | None = None
    ) -> ElasticsearchCandidates:
        client = Elasticsearch(url, request_timeout=timeout_ms / 1000.0, max_retries=0)
        return cls(client, catalogue=catalogue)

    def index_name(self, version: str) -> str:
        """The index that holds one model version's items."""
        return f"{self.alias}-v{_SAFE.sub('-', version.lower())}"

    # ---- publish ---------------------------------------------------------------------------

    def placement(self, model: ServedModel) -> Placement:
        if model.item_vectors is None:
            return Placement.IN_PROCESS
        return Placement.SERVED if model.version in self._indexed else Placement.PENDING

    def publish(self, model: ServedModel) -> None:
        if model.item_vectors is None:
            log.info(
                "model %s (%s) has no item vectors: served from its own lists",
                model.version,
                model.family,
            )
            return
        try:
            self._publish(model)
        except Exception as exc:  # a cluster outage must not reject a good model
            log.warning(
                "model %s not published to Elasticsearch, own lists until it is: %s",
                model.version,
                exc,
            )
            return
        self._indexed.add(model.version)

    def _publish(self, model: ServedModel) -> None:
        vectors = model.item_vectors
        assert vectors is not None
        if not self.client.options(request_timeout=_PUBLISH_PING_TIMEOUT).ping():
            raise BackendError(self.name, "cluster does not answer")
        index = self.index_name(model.version)
        client = self.client.options(request_timeout=60)  # publishing is not on the request path
        if not client.indices.exists(index=index):
            client.indices.create(index=index, mappings=_mappings(vectors.shape[1]))
        count = int(client.count(index=index)["count"])
        if count != model.n_items:
            helpers.bulk(client, self._actions(model, index), chunk_size=1_000)
            client.indices.refresh(index=index)
            count = int(client.count(index=index)["count"])
        if count != model.n_items:
            raise BackendError(
                self.name, f"index {index} holds {count} documents, expected {model.n_items}"
            )
        self._flip_alias(client, index)

    def _actions(self, model: ServedModel, index: str) -> Iterator[dict[str, Any]]:
        vectors = np.asarray(model.item_vectors, dtype=np.float32)
        popularity = np.asarray(model.bundle.item_popularity, dtype=np.float32)
        ids = model.item_ids_of(np.arange(model.n_items))
        for start in range(0, len(ids), 1_000):
            meta = self.catalogue(ids[start : start + 1_000])
            for i in range(start, min(len(ids), start + 1_000)):
                item = meta.get(ids[i], ItemFeatures(ids[i]))
                yield {
                    "_index": index,
                    "_id": ids[i],
                    "_source": {
                        "item_id": ids[i],
                        "item_index": i,
                        "embedding": vectors[i].tolist(),
                        "categories": list(item.categories),
                        "available": item.available,
                        "published_at": None
                        if item.published_at is None
                        else item.published_at.isoformat(),
                        "popularity": float(popularity[i]),
                    },
                }

    def _flip_alias(self, client: Any, index: str) -> None:
        try:
            current = dict(client.indices.get_alias(name=self.alias))
        except NotFoundError:  # the first publication: no index holds the alias yet
            current = {}
        actions: list[dict[str, Any]] = [
            {"remove": {"index": old, "alias": self.alias}} for old in current if old != index
        ]
        actions.append({"add": {"index": index, "alias": self.alias}})
        client.indices.update_aliases(actions=actions)

    # ---- queries -----------------------------------------------------------------------------

    def candidates(self, model: ServedModel, query: CandidateQuery) -> Candidates:
        popular = (np.asarray(model.popular), Origin.POPULAR, None)
        if query.user_vector is None:
            return merge([popular], query.n)
        found = self._knn(
            model,
            np.asarray(query.user_vector, dtype=np.float32).reshape(-1),
            query.n,
            exclude=sorted(query.exclude),
            category=query.category,
        )
        parts = [(found[0], Origin.VECTOR, None)]
        if query.category is None:
            parts.append(popular)
        return merge(parts, query.n, exclude=query.exclude)

    def similar(self, model: ServedModel, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        if model.item_vectors is None:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        vector = np.asarray(model.item_vectors[item], dtype=np.float32)
        return self._knn(model, vector, n, exclude=[item], category=None, available_only=False)

    def _knn(
        self,
        model: ServedModel,
        vector: np.ndarray,
        k: int,
        exclude: Sequence[int],
        category: str | None,
        available_only: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        filters: list[dict[str, Any]] = []
        if available_only:
            filters.append({"term": {"available": True}})
        if category is not None:
            filters.append({"term": {"categories": category}})
        bool_query: dict[str, Any] = {"filter": filters}
        if exclude:
            bool_query["must_not"] = [{"terms": {"item_index": [int(i) for i in exclude]}}]
        knn = {
            "field": "embedding",
            "query_vector": vector.tolist(),
            "k": k,
            "num_candidates": min(_MAX_NUM_CANDIDATES, max(k * _NUM_CANDIDATES_FACTOR, 100)),
            "filter": {"bool": bool_query},
        }
        response = self.client.search(
            index=self.index_name(model.version),
            knn=knn,
            size=k,
            source={"includes": ["item_index"]},
        )
        hits = response["hits"]["hits"]
        ids = np.array([int(h["_source"]["item_index"]) for h in hits], dtype=np.int64)
        scores = np.array([float(h["_score"]) for h in hits], dtype=np.float32)
        return ids, scores

    def ping(self) -> None:
        # A health check, off the request path: the request deadline (50 ms) would report a
        # busy cluster as down.
        if not self.client.options(request_timeout=_PUBLISH_PING_TIMEOUT).ping():
            raise BackendError(self.name, "cluster does not answer")


def _mappings(dims: int) -> dict[str, Any]:
    return {
        "dynamic": "strict",
        "properties": {
            "item_id": {"type": "keyword"},
            "item_index": {"type": "integer"},
            # max_inner_product ranks by the model's own score (dot product, any norm).
            "embedding": {
                "type": "dense_vector",
                "dims": dims,
                "index": True,
                "similarity": "max_inner_product",
            },
            "categories": {"type": "keyword"},
            "available": {"type": "boolean"},
            "published_at": {"type": "date"},
            "popularity": {"type": "float"},
        },
    }
