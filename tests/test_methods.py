import numpy as np
import pytest
import torch

import svp_hf
from svp_hf.errors import SVPConfigError
from svp_hf.selection.methods import METHODS, get_method, register_method, resolve_methods

PROBS = torch.tensor([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [1 / 3, 1 / 3, 1 / 3], [0.0, 1.0, 0.0]])
LABELS = torch.tensor([0, 1, 2, 0])


def test_registry_lists_every_method():
    assert set(svp_hf.list_methods()) >= {
        "least_confidence",
        "entropy",
        "margin",
        "forgetting",
        "el2n",
        "kcenter",
        "random",
    }


def test_least_confidence():
    got = get_method("least_confidence").scorer(PROBS, LABELS)
    np.testing.assert_allclose(got, [0.1, 0.6, 2 / 3, 0.0], atol=1e-6)


def test_entropy():
    got = get_method("entropy").scorer(PROBS, LABELS)
    expected = [-(p * np.log(p)).sum() if p.min() > 0 else 0.0 for p in PROBS.numpy()]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got[2] == pytest.approx(np.log(3), abs=1e-6)  # uniform is the maximum


def test_margin_keeps_smallest():
    method = get_method("margin")
    assert method.descending is False
    np.testing.assert_allclose(method.scorer(PROBS, LABELS), [0.85, 0.05, 0.0, 1.0], atol=1e-6)


def test_el2n_uses_labels():
    got = get_method("el2n").scorer(PROBS, LABELS)
    np.testing.assert_allclose(got[0], np.sqrt(0.1**2 + 0.05**2 + 0.05**2), atol=1e-6)
    np.testing.assert_allclose(got[3], np.sqrt(2.0), atol=1e-6)  # confidently wrong is the maximum


def test_random_is_seeded():
    rnd = get_method("random").scorer
    np.testing.assert_array_equal(rnd(10, seed=3), rnd(10, seed=3))
    assert not np.array_equal(rnd(10, seed=3), rnd(10, seed=4))


def test_unknown_method_is_a_clear_error():
    with pytest.raises(SVPConfigError, match="Unknown selection method 'nope'.*least_confidence"):
        get_method("nope")
    with pytest.raises(SVPConfigError, match="at least one"):
        resolve_methods([])


def test_register_a_new_method():
    name = "test_max_prob"

    @register_method(name, needs="logits")
    def _max_prob(probs, labels):
        """Max probability."""
        return probs.max(-1).values

    try:
        method = get_method(name)
        assert method.description == "Max probability."
        with pytest.raises(ValueError, match="already registered"):
            register_method(name, needs="logits")(_max_prob)
    finally:
        METHODS._items.pop(name)
    with pytest.raises(ValueError, match="needs must be"):
        register_method("x", needs="magic")
