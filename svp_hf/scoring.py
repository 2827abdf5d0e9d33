"""Scoring stage: run a trained proxy over a dataset once and compute every requested method's per-example score.

Logit-based scorers are applied batch by batch, so only one float per example and method is kept (never the whole
dataset's logits); embeddings are collected only when a method such as k-centers needs them. Every example is
scored exactly once across processes (``gather_for_metrics`` drops the padding of the last uneven batch).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from .data import INDEX_COLUMN, DataInfo
from .methods import SelectionMethod
from .training import ForgettingTracker, make_loader


def _row_lookup(dataset) -> Optional[np.ndarray]:
    """`svp_index` value -> row position, or None when they coincide (no column, or 0..n-1)."""
    if INDEX_COLUMN not in dataset.column_names or len(dataset) == 0:
        return None
    ids = np.asarray(dataset[INDEX_COLUMN], dtype=np.int64)
    if np.array_equal(ids, np.arange(len(ids))):
        return None
    if ids.min() < 0 or len(np.unique(ids)) != len(ids):
        raise ValueError(f"the {INDEX_COLUMN} column must hold unique non-negative ids")
    lookup = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    lookup[ids] = np.arange(len(ids))
    return lookup


@torch.no_grad()
def stream_outputs(
    model: torch.nn.Module,
    family,
    dataset,
    info: DataInfo,
    accelerator: Accelerator,
    batch_methods: List[SelectionMethod],
    *,
    need_embeddings: bool = False,
    batch_size: int = 256,
    desc: str = "scoring",
) -> Tuple[Dict[str, np.ndarray], Optional[np.ndarray]]:
    """One pass of `model` over `dataset`: the per-batch scores of `batch_methods` (one float per example each) and,
    if asked, the penultimate embeddings; both in the order of `dataset`'s rows.

    Rows are matched to outputs by `svp_index`, which may be any unique ids (e.g. pool indices of a selected subset,
    so selecting never rewrites the data); without the column it is the row position.
    """
    n = len(dataset)
    row_of = _row_lookup(dataset)
    embeddings: Optional[np.ndarray] = None
    eval_ds = family.dataset(dataset, model, info, train=False)
    loader = accelerator.prepare(make_loader(eval_ds, family.collate, batch_size, shuffle=False))
    model = model.to(accelerator.device).eval()
    batch_scores = np.full((len(batch_methods), n), np.nan)
    seen = np.zeros(n, dtype=bool)
    for batch in tqdm(loader, desc=desc, disable=not accelerator.is_local_main_process):
        with accelerator.autocast():
            if need_embeddings:
                logits, emb = family.logits_and_embeddings(model, batch)
            else:
                logits, emb = family.logits(model, batch), None
        probs = torch.softmax(logits.float(), dim=-1)
        values = torch.stack([m.scorer(probs, batch["labels"]) for m in batch_methods], dim=1) if batch_methods else probs[:, :0]
        payload = (batch[INDEX_COLUMN], values.double()) + ((emb.float(),) if emb is not None else ())
        gathered = accelerator.gather_for_metrics(payload)
        idx = gathered[0].cpu().numpy()
        idx = idx if row_of is None else row_of[idx]
        batch_scores[:, idx] = gathered[1].cpu().numpy().T
        seen[idx] = True
        if emb is not None:
            emb_np = gathered[2].cpu().numpy()
            if embeddings is None:
                embeddings = np.zeros((n, emb_np.shape[1]), dtype=np.float32)
            embeddings[idx] = emb_np
    if not seen.all():
        raise RuntimeError(f"{int((~seen).sum())} examples were not scored; this is a bug in svp_hf")
    return {m.name: batch_scores[i] for i, m in enumerate(batch_methods)}, embeddings


@torch.no_grad()
def compute_scores(
    model: torch.nn.Module,
    family,
    dataset,
    info: DataInfo,
    methods: List[SelectionMethod],
    accelerator: Accelerator,
    *,
    batch_size: int = 256,
    seed: int = 0,
    forgetting: Optional[ForgettingTracker] = None,
    kcenter_chunk_size: int = 16384,
    desc: str = "scoring",
) -> Dict[str, np.ndarray]:
    """One score array per method, in the order of `dataset`'s rows (see :func:`stream_outputs`)."""
    n = len(dataset)
    batch_methods = [m for m in methods if m.needs == "logits"]
    need_embeddings = any(m.needs == "embeddings" for m in methods)
    scores: Dict[str, np.ndarray] = {}
    embeddings: Optional[np.ndarray] = None

    if batch_methods or need_embeddings:
        scores, embeddings = stream_outputs(
            model, family, dataset, info, accelerator, batch_methods,
            need_embeddings=need_embeddings, batch_size=batch_size, desc=desc,
        )

    for method in methods:
        if method.needs == "embeddings":
            scores[method.name] = method.scorer(embeddings, seed=seed, chunk_size=kcenter_chunk_size)
        elif method.needs == "training":
            if forgetting is None:
                raise ValueError(f"method {method.name!r} needs the proxy's training history")
            scores[method.name] = method.scorer(forgetting)
        elif method.needs == "none":
            scores[method.name] = method.scorer(n, seed=seed)
    return {m.name: scores[m.name] for m in methods}


__all__ = ["compute_scores", "stream_outputs"]
