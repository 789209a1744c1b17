"""The benchmark's result as one markdown table (and the kernel profile, when taken)."""

from seqmia_jax.perf import profiling


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _si(value: float | None) -> str:
    if value is None:
        return "n/a"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _flops(value: float | None) -> str:
    return "n/a" if value is None else f"{_si(value)}FLOP/s"


def format_table(result: dict) -> str:
    """A two-line header and one markdown table: a row per training strategy, scoring, attacks."""
    dev, cfg = result["device"], result["config"]
    load = result["load_average"]
    header = (
        f"{dev['device_kind']} x{dev['num_devices']} ({dev['platform']}, jax "
        f"{result['jax_version']}), peak {_flops(dev['peak_flops_per_device'])} per device "
        f"({dev['peak_source']}); 1-min load {load['before'][0]:.2f} -> {load['after'][0]:.2f}\n"
        f"S={cfg['num_shadow_models']} N={cfg['num_samples']} L={cfg['seq_len']} "
        f"layers={cfg['num_layers']} width={cfg['embed_dim']} B={cfg['batch_size']} "
        f"{cfg['compute_dtype']}, {_si(cfg.get('params_per_model'))} params and "
        f"{_si(cfg['flops_per_token'])} FLOP/token per model"
        + (
            f"; {cfg['timed_chunks']} x {cfg['chunk_steps']} steps timed per strategy"
            if "training" in result
            else ""
        )
        + "\n\n"
    )
    columns = ["stage", "strategy", "tokens/s", "model-steps/s", "samples/s", "model FLOP/s"]
    columns += ["MFU", "x loop", "seconds", "peak mem/model"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    auto = result.get("auto", {}).get("resolves_to")
    for label, row in result.get("training", {}).items():
        mem = row["peak_bytes_per_model"]
        cells = [
            "train",
            label + (" (= auto)" if label == auto else ""),
            _si(row["tokens_per_s"]),
            _num(row["model_steps_per_s"], ".1f"),
            "",
            _flops(row["model_flops_per_s"]),
            "n/a" if row["mfu"] is None else f"{100 * row['mfu']:.2f}%",
            _num(row.get("speedup_vs_loop"), ".2f"),
            _num(row["seconds"], ".2f"),
            "n/a" if mem is None else f"{mem / 2**20:.1f} MiB",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if "scoring" in result:
        sc = result["scoring"]
        lines.append(
            f"| score | {sc['strategy']}, batch N={sc['num_samples']} x S={sc['num_models']} | | | "
            f"{sc['samples_per_s']:.1f} | | | | {sc['seconds']:.3f} | |"
        )
    if "attacks" in result:
        at = result["attacks"]
        shape = "x".join(str(n) for n in at["shape"])
        slowest = max(at["per_attack_s"].items(), key=lambda item: item[1], default=None)
        note = f"; slowest {slowest[0]} {slowest[1]:.1f} s" if slowest else ""
        note += f"; metrics and CIs {at['metrics_s']:.1f} s"
        if "warm_seconds" in at:
            note += f"; warm rerun {at['warm_seconds']:.1f} s"
        lines.append(
            f"| attacks | {len(at['per_attack_s'])} attacks, LOO over all S, S x N x L = "
            f"{shape}{note} | | | | | | | {at['seconds']:.2f} | |"
        )
    table = header + "\n".join(lines) + "\n"
    if "profile" in result:
        prof = result["profile"]
        table += (
            f"\nProfile of one {prof['steps']}-step chunk of {prof['strategy']}: "
            + profiling.format_profile(prof, prof["wall_seconds"])
        )
    return table
