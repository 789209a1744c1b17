"""experiments.study.dp_table on a hand-made sweep directory."""

import json

from experiments.study import dp_table


def _attack(tpr, resolved, cp, gdp):
    return {
        "tpr_at_fpr": {"0.001": {"tpr": tpr, "resolved": resolved}},
        "epsilon_lower_bound": {
            "cp": cp,
            "gdp": gdp,
            "delta": 1e-5,
            "confidence": 0.95,
            "validation_targets": [0, 1],
            "held_out_targets": [2, 3],
        },
    }


def _caveated(attack):
    attack["epsilon_lower_bound"]["caveat"] = "its scores read the target's own membership"
    return attack


def test_rows_sorted_by_epsilon_with_the_best_bounds_and_marks(tmp_path, capsys):
    points = {
        "train.dp_clip_norm=0.0": {
            "attacks": {
                "lira": _attack(0.2, True, 2.5, 6.0),
                "loss": _attack(0.01, False, 0.4, 0.1),
            }
        },
        "train.dp_target_epsilon=1.0": {
            "dp": {"epsilon": 0.9999},
            "attacks": {
                "lira": _attack(0.001, True, 0.0, 0.2),
                "loss": _attack(0.0, True, 0.1, 0.0),
                # A bound with a caveat is shown per attack but never as the best.
                "rmia": _caveated(_attack(0.0, True, 3.0, 3.0)),
            },
        },
    }
    for name, results in points.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(results))
    (tmp_path / "train-abc").mkdir()  # a trained ensemble, not a point
    (tmp_path / "train-abc" / "results.json").write_text("{}")
    dp_table.main([str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| point | accountant epsilon | best CP bound | best GDP bound |")
    rows = [line.split(" | ") for line in lines[2:4]]
    assert rows[0][0] == "| train.dp_target_epsilon=1.0" and rows[0][1] == "1"
    assert rows[0][2] == "0.100 (`loss`)" and rows[0][3] == "0.200 (`lira`)"
    assert rows[1][1] == "∞ (no DP)" and rows[1][2] == "2.500 (`lira`)"
    assert rows[1][3] == "6.000 (`lira`)" and rows[1][5] == "0.0100 † |"
    assert "thresholds from targets [0, 1], bounds on [2, 3]" in lines[-1]
