"""svp_hf.active_learning: the pool's row identity."""

import numpy as np

import svp_hf

TINY = dict(proxy_epochs=1, batch_size=64, learning_rate=0.05, seed=0)


def test_the_pool_ignores_an_incoming_svp_index(tiny_digits):
    """Row identity in the pool is positional: an incoming svp_index (e.g. a shuffled svp_hf output) is replaced, so
    the same rows are labelled as without it and every returned svp_index points at its row."""
    train, _ = tiny_digits
    permuted = train.add_column("svp_index", np.random.default_rng(1).permutation(len(train)).tolist())
    plain = svp_hf.active_learn(train, initial_size=20, budgets=[40], **TINY).labelled
    again = svp_hf.active_learn(permuted, initial_size=20, budgets=[40], **TINY).labelled
    assert again["svp_index"] == plain["svp_index"]
    assert again["label"] == [train[i]["label"] for i in again["svp_index"]]
