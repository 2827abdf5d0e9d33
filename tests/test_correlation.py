import numpy as np
import pytest
from datasets import Dataset

from svp_hf import SVPConfigError, compare_scores, kendall, spearman, top_k_overlap
from svp_hf.publish.metrics import list_metrics, load_metric, metric_path
from svp_hf.selection.correlation import average_ranks, rank_agreement
from svp_hf.selection.ranking import select_indices

stats = pytest.importorskip("scipy.stats")


def _pairs(seed, n):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, max(2, n // 4), n).astype(float)  # many ties
    b = a + rng.normal(0, 1.5, n)
    if seed % 2:
        b = np.round(b)  # ties on both sides, some tied in both
    if seed % 3 == 0:
        a[rng.integers(0, n, 3)] = np.inf  # never-learned examples under forgetting events
    return a, b


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("n", [2, 7, 40, 513])
def test_spearman_kendall_and_ranks_match_scipy(seed, n):
    a, b = _pairs(seed, n)
    np.testing.assert_allclose(average_ranks(a), stats.rankdata(a))
    np.testing.assert_allclose(spearman(a, b), stats.spearmanr(a, b).statistic, equal_nan=True)
    np.testing.assert_allclose(kendall(a, b), stats.kendalltau(a, b).statistic, equal_nan=True)


def test_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one discordant pair out of six: tau = (5 - 1) / 6
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3])) and np.isnan(kendall([1, 1, 1], [1, 2, 3]))


def test_kendall_on_a_large_input_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=20_000)
    b = a + rng.normal(size=a.size)
    assert kendall(a, b) == pytest.approx(stats.kendalltau(a, b).statistic, abs=1e-12)


def test_top_k_overlap_is_the_overlap_of_the_two_selections():
    a = [0.9, 0.8, 0.1, 0.2]
    b = [0.7, 0.1, 0.9, 0.2]
    assert top_k_overlap(a, b, k=2) == 0.5  # {0, 1} vs {0, 2}
    assert top_k_overlap(a, b, k=2, descending=False) == 0.5  # {2, 3} vs {1, 3}
    assert top_k_overlap(a, a, fraction=0.25) == 1.0
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 5, 200).astype(float), rng.integers(0, 5, 200).astype(float)  # heavy ties: seeded breaks
    expected = len(set(select_indices(x, 60, seed=3)) & set(select_indices(y, 60, seed=3))) / 60
    assert top_k_overlap(x, y, fraction=0.3, seed=3) == expected


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: spearman([1, 2, 3], [1, 2]), "cannot compare 3 scores with 2"),
        (lambda: kendall([1, np.nan], [1, 2]), "NaN"),
        (lambda: spearman([1], [1]), "at least 2"),
        (lambda: top_k_overlap([1, 2], [2, 1]), "exactly one of k and fraction"),
        (lambda: top_k_overlap([1, 2], [2, 1], k=3), "k must be between 1 and"),
    ],
)
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(SVPConfigError, match=message):
        call()


def _scores(order, **columns):
    return Dataset.from_dict({"svp_index": order, "label": [0] * len(order), **columns})


def test_compare_scores_matches_rows_by_index_and_skips_model_free_methods():
    rng = np.random.default_rng(0)
    proxy = rng.normal(size=50)
    target = proxy + rng.normal(0, 0.5, 50)
    rnd = rng.random(50)
    perm = rng.permutation(50)  # the second table lists the same examples in another order
    a = _scores(list(range(50)), least_confidence=proxy, margin=-proxy, random=rnd)
    b = _scores(perm.tolist(), least_confidence=target[perm], margin=-target[perm], random=rnd[perm])
    result = compare_scores(a, b, fraction=0.2)
    assert set(result) == {"least_confidence", "margin"}  # random depends on the seed only
    assert result["least_confidence"]["spearman"] == pytest.approx(stats.spearmanr(proxy, target).statistic)
    assert result["least_confidence"]["kendall"] == pytest.approx(stats.kendalltau(proxy, target).statistic)
    assert result["least_confidence"]["k"] == 10
    # margin keeps the lowest scores, so its top-k is least_confidence's top-k here
    assert result["margin"]["top_k_overlap"] == result["least_confidence"]["top_k_overlap"]
    assert result["least_confidence"] == rank_agreement(proxy, target, fraction=0.2)
    with pytest.raises(SVPConfigError, match="not scored in both"):
        compare_scores(a, b, ["entropy"])
    with pytest.raises(SVPConfigError, match="do not score the same examples"):
        compare_scores(a, _scores(list(range(1, 51)), least_confidence=target))


def test_evaluate_module_loads_by_path_offline():
    assert list_metrics() == ["rank_agreement"]
    a, b = _pairs(4, 60)
    metric = load_metric("rank_agreement")
    result = metric.compute(predictions=a.tolist(), references=b.tolist())
    assert result == {"spearman": pytest.approx(spearman(a, b)), "kendall": pytest.approx(kendall(a, b))}
    result = metric.compute(predictions=[0.9, 0.8, 0.1, 0.2], references=[0.7, 0.1, 0.9, 0.2], k=2)
    assert result == {"spearman": pytest.approx(-0.4), "kendall": pytest.approx(-1 / 3), "top_k_overlap": 0.5}
    # the same module by its path, as a user would load it with evaluate directly, fed incrementally
    import evaluate

    streamed = evaluate.load(metric_path("rank_agreement"))
    for x, y in zip(a, b):
        streamed.add(predictions=x, references=y)
    result = streamed.compute(fraction=0.25, descending=False, seed=1)
    assert result["kendall"] == pytest.approx(kendall(a, b))
    assert result["top_k_overlap"] == top_k_overlap(a, b, fraction=0.25, descending=False, seed=1)
    with pytest.raises(SVPConfigError, match="unknown svp_hf metric"):
        metric_path("accuracy")
