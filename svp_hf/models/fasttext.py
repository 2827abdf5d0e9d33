"""fastText (Joulin et al. 2017, "Bag of Tricks for Efficient Text Classification") in torch: the SVP text proxy.

Words and word n-grams are hashed into a fixed number of buckets, their embeddings averaged by an
``nn.EmbeddingBag`` and fed to a linear classifier. Text is normalised and split into words with the `tokenizers`
library (BERT's normalizer and pre-tokenizer: lower-case, accents stripped, punctuation split off); each word is hashed
with CRC-32, so ids never depend on ``PYTHONHASHSEED``, the process or the machine. Preprocessing runs once per
dataset with ``datasets.map(batched=True)``, and the model trains through the same Accelerate loop as every other.

Names: ``fasttext`` or ``fasttext,dim=32,ngrams=2,buckets=1048576,max_words=1000``.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence

import numpy as np
import torch
from torch import nn

from ..data.columns import INDEX_COLUMN, DataInfo
from ..data.packed import PackedText, packed_text
from ..data.text import text_dataset
from ..errors import SVPConfigError
from . import ModelFamily, parse_model_spec, register_family

NAME = "fasttext"
_MASK64 = (1 << 64) - 1
# Bucket ids and bag offsets in batches: int32 (``nn.EmbeddingBag`` reads either), half the bytes of int64 to store
# and to move for every batch; hence at most 2**31 buckets.
IDS = np.int32
MAX_BUCKETS = 1 << 31


@dataclass(frozen=True)
class FastTextConfig:
    dim: int = 16  # embedding size (fastText's supervised default is 10; SVP's reference used 10)
    ngrams: int = 2  # longest word n-gram: 2 = unigrams and bigrams
    buckets: int = 1 << 21  # hash buckets shared by words and n-grams (fastText's default: 2M)
    max_words: int = 1000  # words read per text (longer texts are truncated)

    def __post_init__(self):
        for key, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SVPConfigError(f"fasttext option {key} must be a positive integer, got {value!r}")
        if self.buckets > MAX_BUCKETS:
            raise SVPConfigError(f"fasttext option buckets must be at most {MAX_BUCKETS}, got {self.buckets}")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mixer (SplitMix64's finaliser), vectorised; uint64 arithmetic wraps around."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(_MASK64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class NgramHasher:
    """Text -> bucket ids of its words and word n-grams. Deterministic: CRC-32 of each word, n-grams combined with
    SplitMix64, all reduced modulo `buckets`."""

    def __init__(self, ngrams: int = 2, buckets: int = 1 << 20, max_words: int = 1000):
        from tokenizers import normalizers, pre_tokenizers

        self.ngrams, self.buckets, self.max_words = ngrams, buckets, max_words
        self.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
        self.pre_tokenizer = pre_tokenizers.BertPreTokenizer()

    def words(self, text: str) -> List[str]:
        normalized = self.normalizer.normalize_str(text)
        return [w for w, _ in self.pre_tokenizer.pre_tokenize_str(normalized)][: self.max_words]

    def ids(self, text: str) -> List[int]:
        words = self.words(text)
        if not words:
            return []
        word_hashes = np.fromiter((zlib.crc32(w.encode("utf-8")) for w in words), dtype=np.uint64, count=len(words))
        grams = [_splitmix64(word_hashes)]
        combined = word_hashes
        for n in range(2, self.ngrams + 1):
            # n-gram starting at i = mix(hash of its (n-1)-gram prefix, next word's hash)
            combined = _splitmix64((combined[:-1] << np.uint64(1)) ^ word_hashes[n - 1 :] ^ np.uint64(n))
            if len(combined) == 0:
                break
            grams.append(combined)
        return (np.concatenate(grams) % np.uint64(self.buckets)).astype(np.int64).tolist()

    def __call__(self, texts: Sequence[str]) -> Dict[str, List[List[int]]]:
        return {"input_ids": [self.ids(t) for t in texts]}


class FastText(nn.Module):
    """Averaged embeddings of hashed words and n-grams, then a linear classifier."""

    def __init__(self, num_classes: int, config: FastTextConfig = FastTextConfig()):
        super().__init__()
        self.config = config
        # Sparse gradients: a step touches only the rows of the batch's words, as in fastText's own updates.
        # Built on uninitialised memory: the constructor's own normal_ init of a table of millions of rows (about 0.4 s
        # for 2M x 64) would be overwritten at once by the uniform_ below.
        table = torch.empty(config.buckets, config.dim)
        self.embedding = nn.EmbeddingBag(config.buckets, config.dim, mode="mean", sparse=True, _weight=table)
        self.classifier = nn.Linear(config.dim, num_classes, bias=False)  # fastText's output layer has no bias
        # Uniform(-0.5, 0.5) for both layers: fastText's own near-zero start (tiny input vectors, a zero output layer)
        # escapes too slowly with batched SGD's few steps per epoch.
        nn.init.uniform_(self.embedding.weight, -0.5, 0.5)
        nn.init.uniform_(self.classifier.weight, -0.5, 0.5)

    def hasher(self) -> NgramHasher:
        return NgramHasher(self.config.ngrams, self.config.buckets, self.config.max_words)

    def embed(self, input_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.embedding(input_ids, offsets)

    def forward(self, input_ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(input_ids, offsets))


def _parse(name: str) -> FastTextConfig:
    base, options = parse_model_spec(name)
    unknown = sorted(set(options) - set(FastTextConfig.__dataclass_fields__))
    if unknown:
        raise SVPConfigError(
            f"unknown fasttext option(s) {unknown} in {name!r}; known: {sorted(FastTextConfig.__dataclass_fields__)}"
        )
    return FastTextConfig(**options)


def _handles(name: str) -> bool:
    return name.split(",", 1)[0].strip() == NAME


def _create(name: str, info: DataInfo, *, pretrained: bool = False, trust_remote_code: bool = False) -> FastText:
    # fastText has no pretrained weights here: it is always trained from scratch, so `pretrained` does not apply.
    return FastText(info.num_classes, _parse(name))


def _check(name: str, info: DataInfo, *, trust_remote_code: bool = False) -> None:
    _parse(name)


def fasttext_dataset(dataset, model: FastText, info: DataInfo, train: bool, augment: bool = True):
    """`dataset` as hashed n-gram ids (``input_ids``), ``labels`` and `svp_index`, computed once with `datasets.map`
    and packed into flat arrays (:class:`~svp_hf.data.packed.PackedText`): a batch is one gather."""

    def build():
        encoded = text_dataset(dataset, info, model.hasher(), desc="hashing words and n-grams")
        return PackedText(encoded, ["input_ids"], layout="bags", dtype=IDS)

    key = ("fasttext", model.config, tuple(info.input_columns), info.label_column)
    return packed_text(dataset, key, build)


def collate_bags(rows: Sequence[dict]) -> Dict[str, torch.Tensor]:
    """Concatenate the rows' ids into one flat tensor with bag offsets, as ``nn.EmbeddingBag`` reads them."""
    lengths = [len(r["input_ids"]) for r in rows]
    offsets = np.zeros(len(rows), dtype=IDS)
    np.cumsum(lengths[:-1], out=offsets[1:])
    # np.fromiter over the chained ids: several times faster than torch.tensor on a flat Python list.
    flat = np.fromiter(itertools.chain.from_iterable(r["input_ids"] for r in rows), dtype=IDS, count=sum(lengths))
    return {
        "input_ids": torch.from_numpy(flat),
        "offsets": torch.from_numpy(offsets),
        "labels": torch.tensor([r["labels"] for r in rows], dtype=torch.long),
        INDEX_COLUMN: torch.tensor([r[INDEX_COLUMN] for r in rows], dtype=torch.long),
    }


def _logits(model: FastText, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch["input_ids"], batch["offsets"])


def _logits_and_embeddings(model: FastText, batch: Dict[str, torch.Tensor]):
    embeddings = model.embed(batch["input_ids"], batch["offsets"])  # the averaged n-gram embedding
    return model.classifier(embeddings), embeddings


register_family(
    ModelFamily(
        name=NAME,
        modality="text",
        handles=_handles,
        create=_create,
        dataset=fasttext_dataset,
        collate=collate_bags,
        logits=_logits,
        logits_and_embeddings=_logits_and_embeddings,
        priority=10,
        check=_check,
        sparse_gradients=True,
    )
)

__all__ = ["FastText", "FastTextConfig", "NgramHasher", "collate_bags", "fasttext_dataset"]
