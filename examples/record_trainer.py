"""Score a text dataset with the training dynamics of your own ``transformers.Trainer`` run, then keep half of it.

A BERT text classifier trains with the ``Trainer`` on svp_hf's small synthetic review set (offline: a tiny BERT built
from its config, with a word-level tokenizer trained on the data; ``--model`` takes a local folder or Hub id
instead). Two added lines (marked ``# svp_hf``) record the run; ``recorder.scores`` returns the table
``svp_hf.score`` returns, so ``svp_hf.select`` (here with coverage-centric selection) works on it.

    python examples/record_trainer.py --epochs 3
    python examples/record_trainer.py --model path/to/all-MiniLM-L6-v2 --epochs 2
    accelerate launch --multi_gpu --num_processes 2 examples/record_trainer.py --epochs 3
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Optional, Sequence

from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    DataCollatorWithPadding,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
)

import svp_hf


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", default=None, help="a local model folder or Hub id (default: a tiny BERT from its config)"
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-rows", type=int, default=None, help="train on the first rows only (quick runs)")
    parser.add_argument("--method", default="aum", help="the method the subset is kept by")
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default=None, help="the Trainer's output_dir (default: a temporary folder)")
    parser.add_argument("--output", default=None, help="write the scores table here (parquet), from the main process")
    return parser.parse_args(argv)


def word_tokenizer(texts) -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained on `texts` (no download needed)."""
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=128,
    )


def main(argv: Optional[Sequence[str]] = None):
    """Train, record, score and select; returns ``(scores, subset, recorder)``."""
    args = parse_args(argv)
    train = svp_hf.load_data("builtin:reviews")["train"]
    if args.max_rows:
        train = train.select(range(min(args.max_rows, len(train))))
    texts = [f"{title}. {content}" for title, content in zip(train["title"], train["content"])]
    num_labels = train.features["label"].num_classes
    if args.model:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=num_labels)
    else:
        tokenizer = word_tokenizer(texts)
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            num_labels=num_labels,
        )
        model = AutoModelForSequenceClassification.from_config(config)
    tokenized = train.map(
        lambda batch: tokenizer([f"{t}. {c}" for t, c in zip(batch["title"], batch["content"])], truncation=True),
        batched=True,
        remove_columns=["title", "content"],
    )
    with tempfile.TemporaryDirectory() as tmp:
        training_args = TrainingArguments(
            output_dir=args.output_dir or tmp,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            seed=args.seed,
            save_strategy="no",
            report_to="none",
            logging_strategy="no",
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model, args=training_args, train_dataset=tokenized, data_collator=DataCollatorWithPadding(tokenizer)
        )
        recorder = svp_hf.DynamicsRecorder(train)  # svp_hf: `train` holds the rows of `tokenized`, in order
        recorder.attach(trainer)  # svp_hf
        trainer.train()
        # EL2N and the other methods that score the trained model's predictions read one pass over the rows.
        trainer.predict(trainer.train_dataset)

    scores = recorder.scores(["forgetting", "aum", "el2n", "confidence", "variability"])
    subset = svp_hf.select(train, scores, args.method, args.fraction, strategy="coverage", coverage_beta=0.1)
    if trainer.is_world_process_zero():
        print(f"recorded {recorder.steps} steps; kept {len(subset)} of {len(train)} rows by {args.method!r} (coverage)")
        if args.output:
            scores.to_parquet(args.output)
    return scores, subset, recorder


if __name__ == "__main__":
    main()
