"""Fine-tuning audit: GPT shadows fine-tuned from one pretrained base on BPE KJV windows.

A byte-level BPE vocabulary and a base model are learned from the KJV text
outside the audit pool (``experiments.pretrain``, run by ``experiments.run``);
every shadow starts from that base and fine-tunes on its own half of the pool,
fully (``train.finetune="full"``) or through LoRA adapters on a frozen base
(``"lora"``). The base is kept in ``base.dir`` and reused by every audit that
names it, so the full and LoRA audits share one.

Arguments, comma-separated: "" (default, CPU), "tiny" (tests), "gpu" (one
H100/H200), and "lora" with any of them. "lora" sets ``train.finetune="lora"``
and LoRA's higher learning rate; ``--config.train.finetune=lora`` alone keeps
full fine-tuning's rate.

    python -m experiments.run --config=configs/kjv_finetune.py
    python -m experiments.run --config=configs/kjv_finetune.py:lora
"""

import ml_collections

from configs import kjv_gpt


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    parts = {part.strip() for part in arg.split(",") if part.strip()}
    size = parts - {"lora"}
    if len(size) > 1 or not size <= {"tiny", "gpu"}:
        raise ValueError(f"unknown config argument {arg!r}; use '', 'tiny', 'gpu', with ',lora'")
    size = next(iter(size), "")
    cfg = kjv_gpt.get_config(size)
    cfg.data.tokenizer = "bpe:1024"  # subwords learned from the text outside the pool
    cfg.data.seq_len = 64  # L: tokens per window (about 210 bytes of KJV)
    if not size:  # 16 targets x 1,000 OUT samples = 16,000 negatives resolve FPR 1e-4
        cfg.data.num_samples = 2000

    cfg.base = ml_collections.ConfigDict()
    cfg.base.source = "pretrain"  # train the base here unless base.dir holds it already
    cfg.base.dir = "runs/bases/kjv_bpe1024"  # shared by the full and LoRA audits
    cfg.base.epochs = 3  # passes over the public corpus
    cfg.base.batch_size = 32
    cfg.base.learning_rate = 3e-3
    cfg.base.warmup_steps = 50
    cfg.base.max_windows = 0  # 0: every public window

    cfg.train.finetune = "lora" if "lora" in parts else "full"
    cfg.train.lora_rank = 8
    cfg.train.lora_alpha = 16.0
    cfg.train.lora_targets = "qkv,out,up,down"
    # Fine-tuning: 2 passes at a third of the from-scratch rate give a train/test
    # loss gap of about 5% (measured: docs/finetune.md). LoRA's adapters need a
    # higher rate to move as far.
    cfg.train.epochs = 2
    cfg.train.learning_rate = 1e-2 if cfg.train.finetune == "lora" else 1e-3
    cfg.train.warmup_steps = 10
    if size == "tiny":
        cfg.data.tokenizer = "bpe:512"
        cfg.data.name = "pydoc"
        cfg.data.seq_len = 16
        cfg.base.dir = ""  # <workdir>/base
        cfg.base.epochs = 1
        cfg.base.max_windows = 256
        cfg.base.warmup_steps = 2
        cfg.train.epochs = 2
        cfg.train.warmup_steps = 2
        cfg.train.lora_rank = 4
    elif size == "gpu":
        # 4,000 of the 8,400 KJV documents (512 bytes each); 64 targets x 2,000 OUT
        # samples = 128,000 negatives.
        cfg.data.num_samples = 4000
        cfg.data.tokenizer = "bpe:4096"
        cfg.base.dir = "runs/bases/kjv_bpe4096_gpu"
        cfg.base.epochs = 4
        cfg.base.batch_size = 64
        cfg.base.learning_rate = 1e-3
        cfg.train.epochs = 3
        cfg.train.learning_rate = 1e-3 if cfg.train.finetune == "lora" else 3e-4
    return cfg


def get_sweep(arg: str = "") -> list[dict]:
    """Full fine-tuning and LoRA from one base, side by side (experiments.study.finetune_table)."""
    lora = get_config(f"{arg},lora" if arg else "lora").train
    return [
        {"train.finetune": "full"},
        {"train.finetune": "lora", "train.learning_rate": lora.learning_rate},
    ]
