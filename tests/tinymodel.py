"""A tiny, randomly initialised causal LM built on the fly for tests — never the hub.

Tests need a real `transformers` model and tokenizer (real tokenisation, real forward and
backward passes, real `save_pretrained`/`from_pretrained` round trips) but must run
offline in seconds on a CPU. A byte-level BPE trained on local Python source plus a
2-layer Llama gives exactly that: every code path of the real pipeline, at toy scale.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

EOS = "<|endoftext|>"
PAD = "<|pad|>"
BOS = "<|begin|>"

# A minimal ChatML-style template so chat-aware code paths (apply_chat_template) work.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_STDLIB_FILES = ("textwrap.py", "string.py", "bisect.py", "heapq.py", "functools.py", "fractions.py")


def _default_text() -> str:
    """Python source from the stdlib: code-like text with no download."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = [(root / name).read_text(encoding="utf-8") for name in _STDLIB_FILES if (root / name).exists()]
    # English words too, so Alpaca prompts do not fall back to single bytes everywhere.
    parts.append("Below is an instruction that describes a task, paired with an input that provides "
                 "further context. Write a response that appropriately completes the request.\n\n"
                 "### Instruction:\n### Input:\n### Response:\n" * 20)
    return "\n".join(parts)


def build_tiny_model(out_dir: Path, *, vocab_text: str | None = None, layers: int = 2,
                     hidden: int = 256, chat_template: bool = False, vocab_size: int = 2048,
                     seed: int = 0) -> Path:
    """Write a tiny Llama-style model + byte-level BPE tokenizer to `out_dir` and return it.

    Deterministic for the same arguments (BPE training and the init seed are fixed), so two
    builds of the same model are interchangeable in tests.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = vocab_text if vocab_text is not None else _default_text()

    specials = [EOS, PAD, BOS] + (["<|im_start|>", "<|im_end|>"] if chat_template else [])
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    lines = text.splitlines(keepends=True)
    bpe.train_from_iterator(("".join(lines[i:i + 64]) for i in range(0, len(lines), 64)), trainer=trainer)

    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=PAD, bos_token=BOS,
                                  model_max_length=2048)
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out_dir)

    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 64), max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True, torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out_dir)
    return out_dir
