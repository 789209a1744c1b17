"""Runs membership-inference attacks on a scored work directory and prints the results table.

python -m experiments.attack --workdir=runs/tiny
python -m experiments.attack --workdir=runs/tiny --attacks="lira;seq:cov=pooled;loss" --targets=4

--targets has the grammar of ``attack.targets`` in a config: K (the first K
models), a range a:b, or a list i,j,k (a single model: --targets=5,); empty
means every model. Specs are separated by ';' because a spec
contains commas. Without --attacks the default set runs, skipping attacks
whose inputs are absent. Bad inputs print one message and exit with status 2.
"""

from absl import flags

from seqmia_jax import launch
from seqmia_jax.attacks.runner import run_attacks
from seqmia_jax.attacks.specs import split_specs
from seqmia_jax.config import AttackConfig, parse_targets
from seqmia_jax.report.table import results_table_markdown
from seqmia_jax.workdir import Workdir

_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory with stats/.", required=True)
_ATTACKS = flags.DEFINE_string("attacks", "", "';'-separated attack specs; empty = defaults.")
_TARGETS = flags.DEFINE_string(
    "targets", "", "Target models: K (the first K), a range a:b, or a list i,j,k; empty = all."
)
_BOOTSTRAP = flags.DEFINE_integer(
    "bootstrap", AttackConfig().bootstrap, "Bootstrap replicates for the 95% CIs."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the bootstrap and of randomized attacks.")
_EVIDENCE = flags.DEFINE_string("evidence_attack", None, "Spec whose per-token evidence to save.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Output directory; default WORKDIR/results.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing results.")


def _run() -> None:
    # The lock is taken where the results go, so a read-only work directory can be
    # attacked into an --out_dir elsewhere.
    target = Workdir(_OUT_DIR.value or _WORKDIR.value)
    with target.lock(collective=False, create=_OUT_DIR.value is not None):
        results = run_attacks(
            _WORKDIR.value,
            split_specs(_ATTACKS.value) or None,
            parse_targets(_TARGETS.value),
            bootstrap=_BOOTSTRAP.value,
            seed=_SEED.value,
            evidence_attack=_EVIDENCE.value,
            out_dir=_OUT_DIR.value,
            overwrite=_OVERWRITE.value,
        )
    print(results_table_markdown(results))


def main(argv):
    del argv
    launch.init_runtime()
    launch.run_cleanly(_run)


if __name__ == "__main__":
    launch.run_main(main)
