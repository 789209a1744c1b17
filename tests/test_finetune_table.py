"""experiments.study.finetune_table on a hand-made sweep directory."""

import json

import numpy as np

from experiments.study import finetune_table


def _point(tmp_path, name, mode, memory, tpr, resolved, seconds):
    done = {
        "step": 4,
        "seconds": seconds,
        "tokens_per_s": 1234.5,
        "finetune": {"mode": mode, "base": "abc", "memory_bytes": memory},
    }
    (tmp_path / name).mkdir()
    (tmp_path / name / "point.json").write_text(json.dumps({"stats": {"train": done}}))
    attacks = {
        s: {"tpr_at_fpr": {"0.001": {"tpr": tpr, "resolved": resolved}}} for s in ("lira", "loss")
    }
    (tmp_path / name / "results.json").write_text(json.dumps({"attacks": attacks}))
    return done


def test_rows_carry_memory_speed_gap_and_marked_tprs(tmp_path, capsys):
    full = _point(
        tmp_path, "full", "full", {"ensemble": 4000, "full_finetune": 4000}, 0.5, True, 1.0
    )
    _point(tmp_path, "lora", "lora", {"ensemble": 500, "full_finetune": 4000}, 0.25, False, 2.0)
    train = tmp_path / "train-x"
    (train / "stats").mkdir(parents=True)
    (train / "train_done.json").write_text(json.dumps(full))
    keep = np.array([[True, False], [False, True]])
    # Model 0: IN loss 1, OUT loss 2; model 1: IN 1, OUT 2 -> train 1, test 2, gap +100%.
    loss = np.where(keep[..., None], 1.0, 2.0) * np.ones((2, 2, 3))
    np.save(train / "stats" / "loss.npy", loss.astype(np.float32))
    np.save(train / "membership.npy", keep)
    finetune_table.main([str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| point | mode | params + optimizer bytes | full fine-tuning bytes")
    assert lines[0].endswith("| TPR@1e-3 `lira` | TPR@1e-3 `loss` |")
    full_row, lora_row = (line.split(" | ") for line in lines[2:4])
    assert full_row[:6] == [
        "| full",
        "full",
        "4,000",
        "4,000",
        "1,234",
        "1.0000 / 2.0000 (+100.0%)",
    ]
    assert full_row[6] == "0.5000"
    assert lora_row[:6] == ["| lora", "lora", "500", "4,000", "1,234", "n/a"]  # no ensemble found
    assert lora_row[6] == "0.2500 †"
