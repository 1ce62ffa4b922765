"""`TrainingArguments` come from the config without a second list of fields."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from evolcoder.config import FinetuneConfig, build
from evolcoder.train.finetune import training_arguments


def test_marked_fields_reach_training_arguments_unchanged(tmp_path: Path) -> None:
    from transformers import TrainingArguments

    cfg = build(FinetuneConfig, {"learning_rate": 3e-5, "epochs": 2.5, "per_device_batch_size": 4,
                                 "warmup_steps": 7, "lr_scheduler": "linear", "weight_decay": 0.1,
                                 "max_grad_norm": 0.5, "seed": 9, "logging_steps": 3, "dataloader_num_workers": 1,
                                 "max_steps": 0, "save_steps": 5}, "finetune")
    args = training_arguments(cfg, tmp_path / "ckpt", 4, "fp32")
    known = {f.name for f in fields(TrainingArguments)}
    mapped = cfg.hf_arguments()
    assert len(mapped) == 10 and set(mapped) <= known
    assert {name: getattr(args, name) for name in mapped} == {
        "learning_rate": 3e-5, "num_train_epochs": 2.5, "per_device_train_batch_size": 4, "warmup_steps": 7,
        "lr_scheduler_type": "linear", "weight_decay": 0.1, "max_grad_norm": 0.5, "seed": 9, "logging_steps": 3,
        "dataloader_num_workers": 1}
    assert (args.data_seed, args.gradient_accumulation_steps, args.max_steps) == (9, 4, -1)
    assert (args.save_strategy, args.save_steps, args.bf16, args.fp16) == ("steps", 5, False, False)
