"""Supervised fine-tuning data: Alpaca prompts, response-only labels, optional packing.

Masking happens here, at tokenisation, so every trainer (ours, trl, a user's) sees the
same labels: prompt tokens get -100 and only the response plus EOS is learned, as in
WizardCoder's train script. Packing puts several examples in one row and restarts
`position_ids` at every example; transformers turns those restarts into a block-diagonal
causal mask (no attention across examples) and the -100 labels keep the loss inside each
example, so a packed row trains exactly like its examples would one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolcoder.jsonio import read_jsonl

from evolcoder.errors import DataError
from evolcoder.alpaca import alpaca_prompt

IGNORE = -100
REQUIRED = ("instruction", "output")


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Read train.jsonl; a record without a string instruction/output fails with file:line."""
    records = []
    for lineno, record in read_jsonl(path):
        if not isinstance(record, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object")
        for key in REQUIRED:
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise DataError(f"{path}:{lineno}: `{key}` must be a non-empty string")
        if not isinstance(record.get("input", ""), str):
            raise DataError(f"{path}:{lineno}: `input` must be a string")
        records.append(record)
    if not records:
        raise DataError(f"{path}: no training records")
    return records


@dataclass
class TokenStats:
    examples: int = 0
    truncated: int = 0
    dropped: int = 0
    tokens: int = 0
    response_tokens: int = 0
    dropped_ids: list[str] = field(default_factory=list)


def encode_example(tokenizer: Any, instruction: str, input: str, output: str, max_length: int,
                   overlong: str = "truncate") -> dict[str, list[int]] | None:
    """Token ids and labels of one example, or None if it cannot be trained on.

    Prompt and response are tokenised separately so the mask boundary is exact; the
    tokenizer's own special tokens (e.g. BOS) stay on the prompt side.
    """
    prompt = tokenizer(alpaca_prompt(instruction, input), add_special_tokens=True)["input_ids"]
    response = tokenizer(output, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(prompt) >= max_length:
        return None
    if len(prompt) + len(response) > max_length:
        if overlong == "drop":
            return None
        response = response[:max_length - len(prompt)]
    return {"input_ids": prompt + response, "labels": [IGNORE] * len(prompt) + response}


def tokenize_records(records: list[dict[str, Any]], tokenizer: Any, max_length: int,
                     overlong: str = "truncate") -> tuple[Any, TokenStats]:
    """A `datasets.Dataset` of input_ids/labels/example_id plus counts of what was cut."""
    from datasets import Dataset

    stats = TokenStats()
    rows: dict[str, list[Any]] = {"input_ids": [], "labels": [], "example_id": []}
    for index, record in enumerate(records):
        encoded = encode_example(tokenizer, record["instruction"], record.get("input", ""),
                                 record["output"], max_length, overlong)
        example_id = str(record.get("id", index))
        if encoded is None:
            stats.dropped += 1
            stats.dropped_ids.append(example_id)
            continue
        full = len(tokenizer(record["output"], add_special_tokens=False)["input_ids"]) + 1
        response = sum(label != IGNORE for label in encoded["labels"])
        stats.truncated += response < full
        stats.examples += 1
        stats.tokens += len(encoded["input_ids"])
        stats.response_tokens += response
        rows["input_ids"].append(encoded["input_ids"])
        rows["labels"].append(encoded["labels"])
        rows["example_id"].append(example_id)
    if not rows["input_ids"]:
        raise DataError(f"no example fits max_length={max_length} tokens")
    return Dataset.from_dict(rows), stats


def pack(dataset: Any, max_length: int) -> Any:
    """First-fit-decreasing packing of examples into rows of at most `max_length` tokens.

    Each row keeps its examples' ids and gets `position_ids` restarting at 0 per example;
    example order inside the data is still shuffled by the trainer's sampler, row by row.
    """
    from datasets import Dataset

    lengths = [len(ids) for ids in dataset["input_ids"]]
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(max_length - lengths[i])
    input_ids, labels, ids = dataset["input_ids"], dataset["labels"], dataset["example_id"]
    packed: dict[str, list[Any]] = {"input_ids": [], "labels": [], "position_ids": [], "example_ids": []}
    for members in bins:
        packed["input_ids"].append([t for i in members for t in input_ids[i]])
        packed["labels"].append([t for i in members for t in labels[i]])
        packed["position_ids"].append([p for i in members for p in range(lengths[i])])
        packed["example_ids"].append([ids[i] for i in members])
    return Dataset.from_dict(packed)


class SFTCollator:
    """Right-pads a batch and counts real vs padded tokens (the non-pad share metric).

    Packed rows are sent without an attention mask: transformers only derives the
    per-example block-diagonal mask from `position_ids` when no 2D mask is given. The pad
    tail gets its own restarting positions, so it is a separate "example" nobody attends to.

    With `response_logits_only`, the batch also names the positions whose next token is
    learned (`logits_to_keep`, a boolean mask) and their targets (`shift_labels`): the model
    then projects only those positions onto the vocabulary. With a 262k-token vocabulary
    the output layer dominates training cost, and prompt/pad positions never needed it.
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int = 8, response_logits_only: bool = False) -> None:
        self.pad_token_id = pad_token_id
        self.multiple = pad_to_multiple_of
        self.response_logits_only = response_logits_only
        self.real_tokens = 0
        self.total_tokens = 0
        self.seen_ids: list[str] = []

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        width = -(-width // self.multiple) * self.multiple
        packed = "position_ids" in features[0]
        batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
        batch["position_ids" if packed else "attention_mask"] = []
        for f in features:
            n, pad = len(f["input_ids"]), width - len(f["input_ids"])
            batch["input_ids"].append(list(f["input_ids"]) + [self.pad_token_id] * pad)
            batch["labels"].append(list(f["labels"]) + [IGNORE] * pad)
            if packed:
                batch["position_ids"].append(list(f["position_ids"]) + list(range(pad)))
            else:
                batch["attention_mask"].append([1] * n + [0] * pad)
            self.real_tokens += n
            self.seen_ids.extend(f.get("example_ids") or [f["example_id"]])
        self.total_tokens += width * len(features)
        out = {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}
        if self.response_logits_only:
            targets = out["labels"][:, 1:]
            keep = torch.zeros_like(out["labels"], dtype=torch.bool)
            keep[:, :-1] = targets != IGNORE
            out["logits_to_keep"] = keep
            out["shift_labels"] = targets[keep[:, :-1]]  # row-major, the order hidden[keep] has
        return out
