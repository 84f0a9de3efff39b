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

import numpy as np
import pytest
from elasticsearch import Elasticsearch

from es_double import Cluster, double_node
from recloop.serving.candidates.base import CandidateQuery, CandidateSource
from recloop.serving.candidates.elasticsearch import ElasticsearchCandidates
from recloop.serving.candidates.inprocess import InProcessCandidates
from recloop.serving.features.sqlite import SQLiteFeatureStore
from recloop.serving.model import ServedModel, load_served_model
from recloop.serving.testing import fit_bundle, item_features


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
