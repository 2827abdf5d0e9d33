"""transformers sequence classifiers as proxies and targets.

Names (options after commas, see :func:`svp_hf.models.parse_model_spec`):

- ``owner/name`` (a Hub id) or a local folder: ``AutoModelForSequenceClassification.from_pretrained`` with its
  ``AutoTokenizer``. A checkpoint that already has a sequence-classification head keeps it (labels must be in its
  range); any other checkpoint gets a new head with one output per class.
- ``config:MODEL_TYPE`` (``config:bert,num_hidden_layers=2,hidden_size=64``), ``config:PRESET`` (``bert-tiny``,
  ``bert-mini``, ``bert-small``, ``bert-medium``: the compact BERTs of Turc et al. 2019) or ``config:FOLDER_OR_ID``:
  the architecture only, randomly initialised with ``AutoModelForSequenceClassification.from_config``; other options
  override the config. A model type with no ``tokenizer=`` option reads bytes (a byte-level tokenizer that needs no
  files, like the character-level VDCNN of SVP's Amazon experiments); a folder or Hub id uses its own tokenizer.

Options for every name: ``tokenizer=FOLDER_OR_ID`` and ``max_length=N`` (tokens kept per text; default the model's
limit, at most 512). ``trust_remote_code`` is passed only when the caller turns it on. Text is tokenized once with
``datasets.map(batched=True)`` (no padding) and padded per batch by ``DataCollatorWithPadding``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import torch

from ..data.columns import DataInfo
from ..data.packed import PackedText, packed_text
from ..data.text import text_dataset
from ..errors import SVPConfigError
from . import ModelFamily, parse_model_spec, register_family

CONFIG_PREFIX = "config:"
DEFAULT_MAX_LENGTH = 512
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# The compact BERTs of Turc et al. (2019), "Well-Read Students Learn Better": layers L, hidden size H, H/64 heads.
PRESETS: Dict[str, Tuple[str, Dict[str, int]]] = {
    name: (
        "bert",
        dict(
            num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=hidden // 64, intermediate_size=4 * hidden
        ),
    )
    for name, layers, hidden in (
        ("bert-tiny", 2, 128),
        ("bert-mini", 4, 256),
        ("bert-small", 4, 512),
        ("bert-medium", 8, 512),
    )
}
BYTE_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass
class TransformersSpec:
    """A parsed model name: where the config (and maybe weights) come from, and the options."""

    name: str
    source: str  # a model type, a folder or a Hub id
    from_config: bool  # build the architecture without weights
    tokenizer: Optional[str]  # None: the byte-level tokenizer
    max_length: Optional[int]
    config_overrides: Dict[str, Any] = field(default_factory=dict)


def _is_model_type(source: str) -> bool:
    from transformers import CONFIG_MAPPING

    return source in CONFIG_MAPPING


def parse_spec(name: str) -> TransformersSpec:
    base, options = parse_model_spec(name)
    tokenizer = options.pop("tokenizer", None)
    max_length = options.pop("max_length", None)
    if max_length is not None and (not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2):
        raise SVPConfigError(f"max_length in {name!r} must be an integer of at least 2, got {max_length!r}")
    from_config = base.startswith(CONFIG_PREFIX)
    source = base[len(CONFIG_PREFIX) :].strip() if from_config else base
    if not source:
        raise SVPConfigError(f"model {name!r} names no model type, folder or Hub id after {CONFIG_PREFIX!r}")
    if from_config and source in PRESETS:
        source, preset = PRESETS[source]
        options = {**preset, **options}
    elif from_config and not _is_model_type(source) and not _is_checkpoint(source):
        raise SVPConfigError(
            f"model {name!r}: {source!r} is not a transformers model type (e.g. bert, roberta), a preset "
            f"({', '.join(PRESETS)}), a folder or a Hub id"
        )
    if tokenizer is None and not (from_config and _is_model_type(source)):
        tokenizer = source  # a checkpoint brings its own tokenizer
    return TransformersSpec(name, source, from_config, tokenizer, max_length, options)


def _is_checkpoint(source: str) -> bool:
    return os.path.isdir(source) or bool(_HUB_ID.match(source))


def _handles(name: str) -> bool:
    base = name.split(",", 1)[0].strip()
    return base.startswith(CONFIG_PREFIX) or _is_checkpoint(base)


def byte_tokenizer(max_length: int = DEFAULT_MAX_LENGTH):
    """A tokenizer whose tokens are the 256 bytes of the UTF-8 text (plus BERT's special tokens): it needs no vocabulary
    file and no training, and is the same in every process."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {
        token: i for i, token in enumerate(list(BYTE_SPECIAL_TOKENS) + sorted(pre_tokenizers.ByteLevel.alphabet()))
    }
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False), pre_tokenizers.Split("", "isolated")]
    )
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    pad, unk, cls_t, sep_t, mask = BYTE_SPECIAL_TOKENS
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=pad,
        unk_token=unk,
        cls_token=cls_t,
        sep_token=sep_t,
        mask_token=mask,
        model_max_length=max_length,
    )


def _load_tokenizer(spec: TransformersSpec, trust_remote_code: bool):
    from transformers import AutoTokenizer

    if spec.tokenizer is None:
        return byte_tokenizer(spec.max_length or DEFAULT_MAX_LENGTH)
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer, trust_remote_code=trust_remote_code)
    except Exception as err:  # OSError offline, ValueError for unknown tokenizer classes, ...
        raise SVPConfigError(
            f"could not load the tokenizer {spec.tokenizer!r} for model {spec.name!r}: {type(err).__name__}: {err}"
        ) from err
    if tokenizer.pad_token is None:  # e.g. GPT-2: pad with the end-of-text token
        if tokenizer.eos_token is None:
            raise SVPConfigError(f"the tokenizer {spec.tokenizer!r} has neither a padding nor an end-of-text token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _has_classification_head(config) -> bool:
    return any(a.endswith("ForSequenceClassification") for a in (getattr(config, "architectures", None) or []))


def _load_config(spec: TransformersSpec, info: DataInfo, tokenizer, trust_remote_code: bool):
    """The model config with the right number of labels; checks that the dataset's labels fit a pretrained head."""
    from transformers import AutoConfig

    overrides = dict(spec.config_overrides)
    try:
        if spec.from_config and _is_model_type(spec.source):
            overrides.setdefault("vocab_size", len(tokenizer))
            config = AutoConfig.for_model(spec.source, **overrides)
        else:
            config = AutoConfig.from_pretrained(spec.source, trust_remote_code=trust_remote_code, **overrides)
    except Exception as err:
        raise SVPConfigError(f"could not load the config of model {spec.name!r}: {type(err).__name__}: {err}") from err
    if not spec.from_config and _has_classification_head(config) and "num_labels" not in overrides:
        if info.num_classes > config.num_labels:
            raise SVPConfigError(
                f"model {spec.name!r} has a classification head with {config.num_labels} labels, but the dataset's "
                f"label column {info.label_column!r} has labels up to {info.num_classes - 1}: a label is outside the "
                "classifier's range"
            )
    else:
        num_labels = int(overrides.get("num_labels", info.num_classes))
        if info.num_classes > num_labels:
            raise SVPConfigError(
                f"model {spec.name!r} has num_labels={num_labels}, but label column {info.label_column!r} has "
                f"{info.num_classes} classes"
            )
        names = info.class_names or [str(i) for i in range(num_labels)]
        config.num_labels = num_labels
        config.id2label = {i: (names[i] if i < len(names) else str(i)) for i in range(num_labels)}
        config.label2id = {v: k for k, v in config.id2label.items()}
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
    return config


def _max_length(spec: TransformersSpec, tokenizer, config) -> int:
    limits = [DEFAULT_MAX_LENGTH if spec.max_length is None else spec.max_length]
    limits += [v for v in (tokenizer.model_max_length, getattr(config, "max_position_embeddings", None)) if v]
    if spec.max_length is not None and spec.max_length > min(limits):
        raise SVPConfigError(
            f"max_length={spec.max_length} in {spec.name!r} exceeds the model's limit of {min(limits)} tokens"
        )
    return int(min(limits))


def load_parts(name: str, info: DataInfo, *, trust_remote_code: bool = False):
    """The spec, tokenizer, config and sequence length for `name`: everything but the weights (cheap; raises
    `SVPConfigError` naming what cannot be loaded)."""
    spec = parse_spec(name)
    tokenizer = _load_tokenizer(spec, trust_remote_code)
    config = _load_config(spec, info, tokenizer, trust_remote_code)
    return spec, tokenizer, config, _max_length(spec, tokenizer, config)


def _check(name: str, info: DataInfo, *, trust_remote_code: bool = False) -> None:
    load_parts(name, info, trust_remote_code=trust_remote_code)


def _create(name: str, info: DataInfo, *, pretrained: bool = False, trust_remote_code: bool = False):
    """Load or build the model; its tokenizer and sequence length travel with it (``svp_tokenizer``,
    ``svp_max_length``). A folder or Hub id always loads its weights, a ``config:`` name never does; the
    ``pretrained`` flag is timm's and does not apply here."""
    from transformers import AutoModelForSequenceClassification

    spec, tokenizer, config, max_length = load_parts(name, info, trust_remote_code=trust_remote_code)
    try:
        if spec.from_config:
            model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=trust_remote_code)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                spec.source, config=config, trust_remote_code=trust_remote_code
            )
    except Exception as err:
        raise SVPConfigError(f"could not build model {name!r}: {type(err).__name__}: {err}") from err
    model.svp_tokenizer = tokenizer
    model.svp_max_length = max_length
    return model


class Tokenize:
    """Texts -> token ids, truncated to `max_length` and not padded (padding happens per batch)."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, texts):
        return self.tokenizer(texts, truncation=True, max_length=self.max_length)


def transformers_dataset(dataset, model, info: DataInfo, train: bool, augment: bool = True):
    """`dataset` tokenized once with `datasets.map` (cached for file-backed data) and packed into flat arrays
    (:class:`~svp_hf.data.packed.PackedText`): a batch is one gather, padded to its longest row as
    ``DataCollatorWithPadding`` pads."""

    tokenizer = model.svp_tokenizer

    def build():
        encoded = text_dataset(dataset, info, Tokenize(tokenizer, model.svp_max_length), desc="tokenizing")
        columns = [c for c in tokenizer.model_input_names if c in encoded.column_names]
        pads = {
            "input_ids": tokenizer.pad_token_id,
            "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0),
            "attention_mask": 0,
        }
        return PackedText(encoded, columns, layout="padded", pad_values=pads, padding_side=tokenizer.padding_side)

    key = (
        "transformers",
        tokenizer.name_or_path,
        len(tokenizer),
        model.svp_max_length,
        tokenizer.padding_side,
        tuple(info.input_columns),
        info.label_column,
    )
    return packed_text(dataset, key, build)


def _collate_for(model):
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(model.svp_tokenizer)


def _inputs(model, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    names = model.svp_tokenizer.model_input_names
    return {k: v for k, v in batch.items() if k in names}


def _logits(model, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**_inputs(model, batch)).logits


def _logits_and_embeddings(model, batch: Dict[str, torch.Tensor]):
    """Logits and the pooled sentence representation: the last hidden layer averaged over the non-padding tokens."""
    output = model(**_inputs(model, batch), output_hidden_states=True)
    hidden = output.hidden_states[-1]
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
    return output.logits, pooled


register_family(
    ModelFamily(
        name="transformers",
        modality="text",
        handles=_handles,
        create=_create,
        dataset=transformers_dataset,
        collate=None,
        logits=_logits,
        logits_and_embeddings=_logits_and_embeddings,
        priority=200,
        collate_for=_collate_for,
        check=_check,
    )
)

__all__ = ["PRESETS", "TransformersSpec", "parse_spec", "byte_tokenizer", "load_parts", "transformers_dataset"]
