"""Pretrains the base model of a fine-tuning config (``base.source="pretrain"``).

python -m experiments.pretrain --config=configs/kjv_finetune.py --workdir=runs/kjv_finetune

The base goes to ``base.dir`` (default ``<workdir>/base``). A finished base is
reused, never retrained; ``experiments.run`` calls this stage itself.
"""

from absl import flags

from seqmia_jax import launch
from seqmia_jax.config import from_config_dict
from seqmia_jax.pretrain import pretrain

_CONFIG = launch.define_config()
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory of the audit.", required=True)


def main(argv):
    del argv
    launch.init_runtime()

    def run():
        record = pretrain(from_config_dict(_CONFIG.value), _WORKDIR.value)
        if record.get("finished"):
            print(
                f"base: step {record['step']}, train loss {record['train_loss']:.4f}, "
                f"audit-pool loss {record['test_loss']:.4f} ({record['seconds']:.0f} s)"
            )

    launch.run_cleanly(run)


if __name__ == "__main__":
    launch.run_main(main)
