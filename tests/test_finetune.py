"""The finetune stage on a tiny on-the-fly model: masking, packing, learning, resume, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from evolcoder.config import FinetuneConfig, build

from evolcoder.errors import ConfigError
from evolcoder.train.finetune import CONFIG_FILE, train
from evolcoder.jsonio import write_jsonl
from evolcoder.errors import DataError
from evolcoder.hf.models import load_causal_lm, load_tokenizer
from evolcoder.alpaca import alpaca_prompt
from evolcoder.jsonio import file_sha256
from evolcoder.train.sft_data import IGNORE, SFTCollator, encode_example, pack, tokenize_records

REPO = Path(__file__).resolve().parents[1]


def _records(n: int = 24) -> list[dict]:
    """A small fixed dataset with a learnable pattern (and inputs on every third record)."""
    out = []
    for i in range(n):
        k = i % 6 + 1
        out.append({"id": f"t{i}", "round": 0, "method": "seed", "parent_id": None,
                    "instruction": f"Write a Python function that adds {k} to its argument.",
                    "input": f"x = {i}" if i % 3 == 0 else "",
                    "output": f"def add_{k}(x):\n    return x + {k}\n"})
    return out


@pytest.fixture()
def train_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    write_jsonl(path, _records())
    return path


def _cfg(model_dir: Path, tmp_path: Path, **over) -> FinetuneConfig:
    base = {"base_model": str(model_dir), "learning_rate": 2e-3, "max_steps": 30, "per_device_batch_size": 4,
            "max_length": 128, "save_steps": 0, "checkpoint_dir": str(tmp_path / "ckpt"), "logging_steps": 1,
            "warmup_steps": 2, "precision": "fp32"}
    return build(FinetuneConfig, {**base, **over}, "finetune")


def test_prompt_tokens_are_masked(tiny_model_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_model_dir), padding_side="right")
    for inp in ("", "[1, 2, 3]"):
        enc = encode_example(tok, "Reverse a list.", inp, "def rev(xs):\n    return xs[::-1]", 256)
        prompt_len = len(tok(alpaca_prompt("Reverse a list.", inp))["input_ids"])
        assert enc["labels"][:prompt_len] == [IGNORE] * prompt_len
        learned = enc["labels"][prompt_len:]
        assert IGNORE not in learned and learned == enc["input_ids"][prompt_len:]
        assert learned[-1] == tok.eos_token_id
        assert tok.decode(learned[:-1]) == "def rev(xs):\n    return xs[::-1]"
        assert tok.decode(enc["input_ids"][:prompt_len]) == alpaca_prompt("Reverse a list.", inp)
    # The no-input prompt is the plain Alpaca one; the input variant carries `### Input:`.
    assert "### Input:" not in alpaca_prompt("a", "") and "### Input:\nb" in alpaca_prompt("a", "b")


def test_overlong_examples_truncate_or_drop(tiny_model_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_model_dir), padding_side="right")
    long_output = "x = 1\n" * 200
    enc = encode_example(tok, "Count.", "", long_output, 64, "truncate")
    assert len(enc["input_ids"]) == 64 and enc["labels"][-1] != IGNORE
    assert encode_example(tok, "Count.", "", long_output, 64, "drop") is None
    assert encode_example(tok, "word " * 100, "", "y", 64, "truncate") is None  # prompt alone too long
    _, stats = tokenize_records([{"instruction": "Count.", "output": long_output},
                                 {"instruction": "word " * 100, "output": "y", "id": "big"}], tok, 64)
    assert (stats.examples, stats.truncated, stats.dropped, stats.dropped_ids) == (1, 1, 1, ["big"])


def _packed_vs_separate(model, tok, records) -> tuple[float, float]:
    """Max |logit difference| of packed rows vs one-by-one; and the same without isolation."""
    ds, _ = tokenize_records(records, tok, 256)
    packed = pack(ds, 256)
    assert max(len(r) for r in packed["example_ids"]) > 1, "nothing was packed"
    batch = SFTCollator(tok.pad_token_id)([packed[i] for i in range(len(packed))])
    model.config.use_cache = False
    model.eval()
    with torch.no_grad():
        out = model(**batch).logits
        leaky = model(input_ids=batch["input_ids"], labels=batch["labels"],
                      attention_mask=torch.ones_like(batch["input_ids"])).logits
        by_id = {e: i for i, e in enumerate(ds["example_id"])}
        err = leak = 0.0
        for r, ids in enumerate(packed["example_ids"]):
            off = 0
            for e in ids:
                x = torch.tensor([ds[by_id[e]]["input_ids"]])
                ref = model(input_ids=x).logits[0]
                err = max(err, (ref - out[r, off:off + x.shape[1]]).abs().max().item())
                leak = max(leak, (ref - leaky[r, off:off + x.shape[1]]).abs().max().item())
                off += x.shape[1]
    return err, leak


def test_packing_isolates_examples(tiny_model_dir: Path) -> None:
    """Packed rows give the same logits as each example alone (Llama and Gemma 3 attention)."""
    from transformers import AutoModelForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

    tok = load_tokenizer(str(tiny_model_dir), padding_side="right")
    records = _records(8)
    llama = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    gemma = Gemma3ForCausalLM(Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, sliding_window=16, pad_token_id=tok.pad_token_id,
        layer_types=["sliding_attention", "full_attention"]))
    for model in (llama, gemma):
        err, leak = _packed_vs_separate(model, tok, records)
        assert err < 1e-4, (type(model).__name__, err)
        assert leak > 1e-2, "the check cannot tell isolated from leaking attention"


def test_pack_keeps_every_token_within_max_length(tiny_model_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_model_dir), padding_side="right")
    ds, stats = tokenize_records(_records(24), tok, 96)
    packed = pack(ds, 96)
    assert all(len(r) <= 96 for r in packed["input_ids"])
    assert sum(map(len, packed["input_ids"])) == stats.tokens
    assert sorted(e for r in packed["example_ids"] for e in r) == sorted(ds["example_id"])
    for ids, pos in zip(packed["example_ids"], packed["position_ids"]):
        assert sum(p == 0 for p in pos) == len(ids)


def test_loss_falls_and_model_reloads_and_generates(tiny_model_dir: Path, train_file: Path,
                                                    tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    out, metrics_path, live = tmp_path / "model", tmp_path / "train.json", tmp_path / "live"
    metrics = train(_cfg(tiny_model_dir, tmp_path), train_file, out, metrics_path=metrics_path, live_dir=live)
    assert metrics["global_step"] == 30
    shown = capfd.readouterr()
    assert "30/30" in shown.err, "fine-tuning shows its steps and ETA on stderr"
    assert "'loss':" in shown.out + shown.err, "and the loss of each logged step"
    assert metrics["final_loss"] < 0.5 * metrics["first_loss"], metrics
    assert json.loads(metrics_path.read_text())["global_step"] == 30
    assert 0.5 < metrics["nonpad_share"] <= 1.0 and metrics["tokens_per_s"] > 0
    losses = (live / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    assert losses[0] == "step\tloss" and len(losses) == 31
    assert (live / "plots" / "metrics" / "train" / "learning_rate.tsv").is_file()
    assert (live / "plots" / "metrics" / "train" / "tokens_per_s.tsv").is_file()
    saved = json.loads((out / CONFIG_FILE).read_text())
    assert saved["train_data_sha256"] == file_sha256(train_file)
    assert saved["finetune"]["learning_rate"] == 2e-3
    assert not list(tmp_path.glob(".model.partial*"))

    model, tok = load_causal_lm(str(out))
    assert model.config.use_cache is True and tok.padding_side == "left"
    prompt = alpaca_prompt("Write a Python function that adds 3 to its argument.")
    enc = tok([prompt], return_tensors="pt")
    gen = model.generate(**enc, max_new_tokens=12, do_sample=False)
    text = tok.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "def add_" in text, text  # random init never writes this; the trained model does


def test_resume_continues_step_count(tiny_model_dir: Path, train_file: Path, tmp_path: Path) -> None:
    first = train(_cfg(tiny_model_dir, tmp_path, max_steps=4, save_steps=2), train_file, tmp_path / "m1",
                  live_dir=tmp_path / "live1")
    assert (first["global_step"], first["resumed_from_step"]) == (4, 0)
    second = train(_cfg(tiny_model_dir, tmp_path, max_steps=6, save_steps=2), train_file, tmp_path / "m2",
                   live_dir=tmp_path / "live2")
    assert (second["global_step"], second["resumed_from_step"]) == (6, 4)
    steps = [int(line.split("\t")[0]) for line in
             (tmp_path / "live2/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4, 5, 6]  # the curve covers the steps run before the resume too
    # A different config (here the learning rate) never resumes someone else's checkpoint.
    other = train(_cfg(tiny_model_dir, tmp_path, max_steps=2, save_steps=2, learning_rate=1e-3), train_file,
                  tmp_path / "m3")
    assert other["resumed_from_step"] == 0 and other["run_id"] != second["run_id"]


def test_lora_trains_and_merges(tiny_model_dir: Path, train_file: Path, tmp_path: Path) -> None:
    lora = {"enabled": True, "r": 8, "alpha": 16, "dropout": 0.0}
    out = tmp_path / "lora"
    metrics = train(_cfg(tiny_model_dir, tmp_path, max_steps=8, lora=lora), train_file, out)
    assert metrics["lora"] and metrics["final_loss"] < metrics["first_loss"]
    merged, tok = load_causal_lm(str(out))
    base, _ = load_causal_lm(str(tiny_model_dir))
    assert not any("lora" in name for name, _ in merged.named_parameters())
    delta = max((a - b).abs().max().item() for a, b in zip(merged.parameters(), base.parameters()))
    assert delta > 0
    # Unmerged: only the adapter is saved; the shared loader still gives the same model.
    adapter = tmp_path / "adapter"
    train(_cfg(tiny_model_dir, tmp_path, max_steps=8, lora={**lora, "merge": False}), train_file, adapter)
    assert (adapter / "adapter_config.json").is_file() and not (adapter / "model.safetensors").exists()
    unmerged, _ = load_causal_lm(str(adapter))
    x = tok(["def add_3(x):"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=x).logits, unmerged(input_ids=x).logits, atol=1e-4)


def test_gradient_checkpointing_changes_memory_not_results(tiny_model_dir: Path, train_file: Path,
                                                            tmp_path: Path) -> None:
    plain = train(_cfg(tiny_model_dir, tmp_path / "a", max_steps=3), train_file, tmp_path / "a" / "m")
    ckpt = train(_cfg(tiny_model_dir, tmp_path / "b", max_steps=3, gradient_checkpointing=True), train_file,
                 tmp_path / "b" / "m")
    assert abs(plain["final_loss"] - ckpt["final_loss"]) < 1e-4


def test_identical_runs_write_byte_identical_model_dirs(tiny_model_dir: Path, train_file: Path,
                                                       tmp_path: Path) -> None:
    """What DVC hashes: a re-run with the same inputs must not look like a new model."""
    cfg = _cfg(tiny_model_dir, tmp_path, max_steps=3)
    train(cfg, train_file, tmp_path / "m1")
    train(cfg, train_file, tmp_path / "m2")

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    first, second = files(tmp_path / "m1"), files(tmp_path / "m2")
    assert first.keys() == second.keys() and CONFIG_FILE in first
    assert [name for name in first if first[name] != second[name]] == []


@pytest.mark.parametrize("override, key", [
    ("learning_rate: -0.001", "finetune.learning_rate"),
    ("max_length: 0", "finetune.max_length"),
    ("lerning_rate: 0.001", "finetune.lerning_rate"),
    ("packing: maybe", "finetune.packing"),
])
def test_bad_params_fail_before_any_work(tmp_path: Path, train_file: Path, override: str, key: str) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(f"finetune:\n  base_model: /nonexistent/model\n  {override}\n")
    out = tmp_path / "model"
    proc = subprocess.run([sys.executable, str(REPO / "stages/finetune.py"), "--params", str(params),
                           "--train", str(train_file), "--out", str(out), "--metrics",
                           str(tmp_path / "m.json"), "--live-dir", str(tmp_path / "live")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"params: {key}:" in proc.stderr
    assert not out.exists() and not (tmp_path / "m.json").exists() and not (tmp_path / "live").exists()


def test_bad_training_record_names_file_and_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    records = _records(3)
    records[1]["output"] = ""
    write_jsonl(path, records)
    with pytest.raises(DataError, match=r"train\.jsonl:2: `output`"):
        train(_cfg(tiny_model_dir, tmp_path), path, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_global_batch_must_divide() -> None:
    with pytest.raises(ConfigError, match="finetune.global_batch_size"):
        build(FinetuneConfig, {"global_batch_size": 6, "per_device_batch_size": 4}, "finetune")


def test_wizardcoder_preset_is_valid_params(monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented recipe must load as strictly as params.yaml and say what the paper says."""
    from evolcoder.config import BaseModelConfig, load_section

    monkeypatch.chdir(REPO)
    preset = REPO / "configs/presets/wizardcoder.yaml"
    cfg = load_section(FinetuneConfig, "finetune", preset)
    load_section(BaseModelConfig, "base_model", preset)
    assert (cfg.learning_rate, cfg.epochs, cfg.global_batch_size, cfg.max_length) == (2e-5, 3, 512, 2048)
    assert (cfg.warmup_steps, cfg.lr_scheduler, cfg.precision, cfg.gradient_checkpointing) == \
        (30, "cosine", "bf16", True)


@pytest.mark.parametrize("packing", [True, False])
def test_response_logits_only_gives_the_same_loss(tiny_model_dir: Path, packing: bool) -> None:
    """Projecting only response positions onto the vocabulary must not change the loss."""
    from transformers import AutoModelForCausalLM

    from evolcoder.train.finetune import selects_logits

    tok = load_tokenizer(str(tiny_model_dir), padding_side="right")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.use_cache = False
    assert selects_logits(model)
    ds, stats = tokenize_records(_records(10), tok, 256)
    rows = pack(ds, 256) if packing else ds
    feats = [rows[i] for i in range(len(rows))]
    full = SFTCollator(tok.pad_token_id)(feats)
    kept = SFTCollator(tok.pad_token_id, response_logits_only=True)(feats)
    n = int((full["labels"][:, 1:] != IGNORE).sum())
    assert n == stats.response_tokens and kept["shift_labels"].numel() == n
    with torch.no_grad():
        a = model(**full)
        b = model(**kept)
    assert b.logits.shape[-2] == n and a.logits.shape[-2] == full["input_ids"].shape[1]
    assert abs(a.loss.item() - b.loss.item()) < 1e-5


def test_auto_precision_follows_the_hardware(tiny_model_dir: Path, train_file: Path, tmp_path: Path) -> None:
    from evolcoder.hf.precision import cpu_has_native_bf16

    metrics = train(_cfg(tiny_model_dir, tmp_path, max_steps=1, precision="auto"), train_file, tmp_path / "m")
    assert metrics["precision"] == ("bf16" if cpu_has_native_bf16() else "fp32")
