"""WizardCoder supervised fine-tuning on `transformers.Trainer`, laptop CPU to many GPUs.

The Trainer brings accelerate (DDP, FSDP, DeepSpeed via `accelerate launch`), mixed
precision, gradient checkpointing and checkpoint/resume; this module adds what the
recipe needs around it: response-only labels and packing (sft_data), resumable
checkpoints keyed by config + data so a crash never costs finished steps and a changed
run never resumes a stale one, dvclive curves, and an output directory that appears
complete or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from evolcoder.config import FinetuneConfig, to_dict
from evolcoder.errors import ConfigError, TrainError
from evolcoder.hf.models import read_ref, resolve, weights_sha256
from evolcoder.contracts import TRAIN_CONFIG, FinetuneRecord
from evolcoder.jsonio import file_sha256, write_json
from evolcoder.util.hashing import json_sha256
from evolcoder.train.sft_data import SFTCollator, load_records, pack, tokenize_records

CONFIG_FILE = TRAIN_CONFIG
# Settings that change how a run is *executed or reported*, not what it computes, so a
# checkpoint stays resumable across them (max_steps/epochs: extending a run continues it).
_NOT_IN_FINGERPRINT = {"resume", "logging_steps", "save_steps", "checkpoint_dir", "accelerate_config",
                       "trace_examples", "max_steps", "epochs"}


def resolve_precision(precision: str) -> str:
    """`auto` -> bf16 where the hardware does it natively (bf16 GPUs, AVX512-BF16/AMX CPUs),
    fp16 on other GPUs, else fp32 (see `evolcoder.hf.precision`)."""
    from evolcoder.hf.precision import trainer_precision

    return trainer_precision(precision)


def gradient_accumulation(cfg: FinetuneConfig, world_size: int) -> int:
    if not cfg.global_batch_size:
        return cfg.gradient_accumulation_steps
    per_step = cfg.per_device_batch_size * world_size
    if cfg.global_batch_size % per_step:
        raise ConfigError(f"params: finetune.global_batch_size: {cfg.global_batch_size} is not a multiple "
                          f"of per_device_batch_size x processes = {per_step}")
    return cfg.global_batch_size // per_step


def fingerprint(cfg: FinetuneConfig, data_sha: str, base_ref: str) -> str:
    settings = {k: v for k, v in to_dict(cfg).items() if k not in _NOT_IN_FINGERPRINT}
    return json_sha256({"config": settings, "data": data_sha, "base": base_ref}, ensure_ascii=True)[:16]


def _base_reference(base_model: str) -> str:
    """What identifies the base weights: its provenance hash when materialised by us."""
    if read_ref(base_model) is not None:
        return weights_sha256(base_model) or base_model
    return resolve(base_model)


def selects_logits(model: Any) -> bool:
    """Whether `model(logits_to_keep=<bool mask>)` returns logits for just the masked positions.

    Probed with a 4-token forward rather than trusted from the signature: older or remote
    models accept `logits_to_keep` but only as a count, and would silently misalign.
    """
    import inspect

    import torch

    if "logits_to_keep" not in inspect.signature(model.forward).parameters:
        return False
    keep = torch.tensor([[True, False, True, False]])
    ids = torch.zeros((1, 4), dtype=torch.long, device=model.device)
    try:
        with torch.no_grad():
            logits = model(input_ids=ids, logits_to_keep=keep.to(model.device)).logits
    except Exception:  # noqa: BLE001 - any failure means "not supported", full logits are used
        return False
    return tuple(logits.shape[:-1]) in ((2,), (1, 2))


def open_live(live_dir: Path) -> Any:
    """The dvclive logger, opened before any work so a setup problem costs nothing."""
    from dvclive import Live

    try:
        return Live(str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None)
    except Exception as exc:  # dvclive resolves the git baseline, which needs one commit
        if type(exc).__name__ == "SCMError":
            raise TrainError(f"{live_dir}: dvclive cannot log in a git repository with no commits "
                             f"({exc}); make a first commit and rerun") from None
        raise


def _make_callback(live: Any, collator: SFTCollator, world_size: int) -> Any:
    from transformers import TrainerCallback

    class CurvesCallback(TrainerCallback):
        """Loss, learning rate and non-pad tokens/s to dvclive, step-indexed.

        On resume the restored log history is replayed first, so the curves cover the
        whole run, not just the part after the crash.
        """

        def __init__(self) -> None:
            self.live: Any = None
            self.mark = (time.perf_counter(), 0)
            self.rates: list[float] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if live is not None and state.is_world_process_zero:
                self.live = live
                for entry in state.log_history:
                    self._write(entry.get("step", 0), entry)
            self.mark = (time.perf_counter(), collator.real_tokens)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if logs is None or "loss" not in logs:
                return
            now, tokens = time.perf_counter(), collator.real_tokens
            rate = (tokens - self.mark[1]) * world_size / max(now - self.mark[0], 1e-9)
            self.mark = (now, tokens)
            logs["tokens_per_s"] = round(rate, 2)
            self.rates.append(rate)
            self._write(state.global_step, logs)

        def _write(self, step: int, logs: dict) -> None:
            if self.live is None:
                return
            self.live.step = step
            for key in ("loss", "learning_rate", "tokens_per_s", "grad_norm"):
                if isinstance(logs.get(key), (int, float)):
                    self.live.log_metric(f"train/{key}", float(logs[key]))
            self.live.next_step()

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.live is not None:
                self.live.end()

    return CurvesCallback()


def train(cfg: FinetuneConfig, train_path: str | Path, out_dir: str | Path, *,
          metrics_path: str | Path | None = None, live_dir: str | Path | None = None) -> dict[str, Any]:
    """Fine-tune `cfg.base_model` on `train_path`; write the model to `out_dir` and return metrics."""
    from transformers import Trainer, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from evolcoder.hf.models import load_tokenizer

    started = time.perf_counter()
    out_dir, train_path = Path(out_dir), Path(train_path)
    # Known before the Trainer exists (set by torchrun and accelerate launch alike), as the
    # global batch size needs it to pick gradient accumulation.
    world = int(os.environ.get("WORLD_SIZE", "1"))
    accumulation = gradient_accumulation(cfg, world)
    precision = resolve_precision(cfg.precision)

    live = open_live(Path(live_dir)) if live_dir and int(os.environ.get("RANK", "0")) == 0 else None
    data_sha = file_sha256(train_path)
    tokenizer = load_tokenizer(cfg.base_model, padding_side="right")
    dataset, stats = _dataset(cfg, train_path, tokenizer)

    set_seed(cfg.seed)
    model, select_logits = _load_model(cfg)
    run_id = fingerprint(cfg, data_sha, _base_reference(cfg.base_model))
    ckpt_dir = Path(cfg.checkpoint_dir) / run_id
    args = training_arguments(cfg, ckpt_dir, accumulation, precision)
    collator = SFTCollator(tokenizer.pad_token_id, response_logits_only=select_logits)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                      callbacks=[_make_callback(live, collator, world)])
    last = get_last_checkpoint(str(ckpt_dir)) if cfg.resume and ckpt_dir.is_dir() else None
    result = trainer.train(resume_from_checkpoint=last)

    if cfg.trace_examples:  # which example ids this rank trained on (data-parallel ranks must not overlap)
        _write_json_text(ckpt_dir / f"trace-rank{args.process_index}.json", collator.seen_ids)
    log = trainer.state.log_history
    metrics = {
        "train_loss": result.training_loss,
        "first_loss": next((e["loss"] for e in log if "loss" in e), None),
        "final_loss": next((e["loss"] for e in reversed(log) if "loss" in e), None),
        "global_step": trainer.state.global_step, "resumed_from_step": int(Path(last).name.split("-")[-1]) if last else 0,
        "epochs": trainer.state.epoch, "examples": stats.examples, "truncated": stats.truncated,
        "dropped": stats.dropped, "train_tokens": stats.tokens, "response_tokens": stats.response_tokens,
        "rows": len(dataset),
        "nonpad_share": collator.real_tokens / collator.total_tokens if collator.total_tokens else None,
        "tokens_per_s": (collator.real_tokens * world / result.metrics["train_runtime"]
                         if result.metrics.get("train_runtime") else None),
        "runtime_s": round(time.perf_counter() - started, 2), "precision": precision,
        "world_size": world, "gradient_accumulation_steps": accumulation, "packing": cfg.packing,
        "lora": cfg.lora.enabled, "response_logits_only": collator.response_logits_only, "run_id": run_id,
    }
    # Timings stay out of the model dir (they are in the metrics file): an identical re-run
    # then writes a byte-identical dir, and DVC skips the evaluations downstream.
    weights_only = {k: v for k, v in metrics.items() if k not in ("runtime_s", "tokens_per_s")}
    _save(trainer, tokenizer, cfg, out_dir, {"train_data": str(train_path), "train_data_sha256": data_sha,
                                               "base_model": cfg.base_model, "metrics": weights_only})
    if args.process_index == 0 and metrics_path is not None:
        FinetuneRecord.parse(metrics, metrics_path).write(metrics_path)
    trainer.accelerator.wait_for_everyone()
    return metrics


def _dataset(cfg: FinetuneConfig, train_path: Path, tokenizer: Any) -> tuple[Any, Any]:
    """Tokenized training rows (packed when `cfg.packing`) and the counts of what was cut or dropped."""
    dataset, stats = tokenize_records(load_records(train_path), tokenizer, cfg.max_length, cfg.overlong)
    return (pack(dataset, cfg.max_length) if cfg.packing else dataset), stats


def _write_json_text(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _load_model(cfg: FinetuneConfig) -> tuple[Any, bool]:
    """The base model in fp32 (mixed precision autocasts), LoRA-wrapped when enabled; and
    whether its forward can compute logits at the learned positions only."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve(cfg.base_model), dtype=torch.float32,
                                                 attn_implementation=cfg.attn_implementation)
    # With a KV cache, transformers skips packed-sequence masking; training needs none.
    model.config.use_cache = False
    select_logits = cfg.response_logits_only and selects_logits(model)
    if cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            task_type="CAUSAL_LM", r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
            target_modules=cfg.lora.target_modules))
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()
    return model, select_logits


def training_arguments(cfg: FinetuneConfig, ckpt_dir: Path, accumulation: int, precision: str) -> Any:
    """`TrainingArguments` from the config: the fields marked `hf=` in FinetuneConfig pass as they
    are (`cfg.hf_arguments()`), and only what is derived or fixed is written here."""
    import torch
    from transformers import TrainingArguments

    checkpointing = ("activation_checkpointing" if "activation_checkpointing" in
                     TrainingArguments.__dataclass_fields__ else "gradient_checkpointing")
    return TrainingArguments(
        output_dir=str(ckpt_dir), **cfg.hf_arguments(), data_seed=cfg.seed,
        gradient_accumulation_steps=accumulation, max_steps=cfg.max_steps or -1,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=not torch.cuda.is_available(),
        **{checkpointing: cfg.gradient_checkpointing}, logging_first_step=True,
        save_strategy="steps" if cfg.save_steps else "no", save_steps=cfg.save_steps or 500,
        save_total_limit=2, report_to="none", remove_unused_columns=False, disable_tqdm=False,
        ddp_find_unused_parameters=False)


def _save(trainer: Any, tokenizer: Any, cfg: FinetuneConfig, out_dir: Path, provenance: dict) -> None:
    """Build the model dir beside `out_dir`, then rename it in: complete or absent."""
    state = trainer.accelerator.state
    tmp = out_dir.parent / f".{out_dir.name}.partial"
    if state.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    if cfg.lora.enabled and cfg.lora.merge:
        if state.is_main_process:
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.config.use_cache = True
            merged.save_pretrained(tmp)
    else:
        trainer.accelerator.unwrap_model(trainer.model).config.use_cache = True
        trainer.save_model(str(tmp))  # collective under FSDP/DeepSpeed: every rank calls it
    if state.is_main_process:
        tokenizer.padding_side = "left"
        tokenizer.save_pretrained(tmp)
        write_json(tmp / CONFIG_FILE, {"finetune": to_dict(cfg), **provenance})
        (tmp / "training_args.bin").unlink(missing_ok=True)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    trainer.accelerator.wait_for_everyone()
