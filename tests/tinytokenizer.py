"""A real, tiny Hugging Face tokenizer directory for tests (no download, built in milliseconds).

`merge.match: tokens` counts tokens with `base_model.source`'s tokenizer; the embedded Gemma
tokenizer takes minutes to read from its GGUF on a loaded CI machine, so tests point
`base_model.source` at this directory instead: a byte-level BPE trained on a few sentences,
saved with `save_pretrained`, loaded by the same `AutoTokenizer` code path.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

_CORPUS = ["Write a Python function that returns the sum of a list of numbers.",
           "Below is an instruction that describes a task. Write a response that appropriately completes",
           "def f(xs):\n    return sum(xs)\n", "### Instruction:\n### Response:\n### Input:\n"]


def make_tokenizer_dir(path: Path) -> Path:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(_CORPUS * 4, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(path)
    (path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    return path
