"""The per-sample part of a report: every attack's per-sample columns and the leakage items.

Legend: S shadow models, N samples, L positions, T targets, K samples shown.

``SampleView.measure`` computes the per-sample vulnerability of every attack
(``samples``) and its exposure summary (``exposure``); ``select`` picks the K
most vulnerable samples under the ranking attack and averages the evidence
attack's per-position evidence over each one's member targets (``leakage``).
"""

import dataclasses
from pathlib import Path

import numpy as np

from seqmia_jax.data.base import Dataset
from seqmia_jax.report import exposure, leakage, samples
from seqmia_jax.report.headline import Headline, ranking_reason


@dataclasses.dataclass
class SampleView:
    """What the report says about samples: ranking and evidence attacks, columns, summaries."""

    ranking: str | None
    evidence_spec: str | None
    evidence_file: str | None
    per_attack: dict = dataclasses.field(default_factory=dict)  # spec -> metric -> values N
    columns: dict = dataclasses.field(default_factory=dict)  # samples.csv, in file order
    summaries: dict = dataclasses.field(default_factory=dict)  # spec -> exposure summary
    items: list = dataclasses.field(default_factory=list)  # leakage.Vulnerable, K of them
    evidence_KxL: np.ndarray | None = None
    notes: list = dataclasses.field(default_factory=list)

    def measure(
        self,
        dataset: Dataset,
        scores: dict[str, np.ndarray],
        labels_TxN: np.ndarray,
        loss_SxNxL: np.ndarray | None,
        keep_SxN: np.ndarray,
        mask_NxL: np.ndarray | None,
        extra: dict | None = None,
    ) -> None:
        """Per-sample columns (``extra`` appended) and exposure summaries of every attack."""
        num_samples = keep_SxN.shape[1]
        self.cf_mem_N = np.full(num_samples, np.nan)
        if loss_SxNxL is not None:
            self.cf_mem_N = samples.counterfactual_memorization(loss_SxNxL, keep_SxN, mask_NxL)
        snippets = [
            samples.snippet(dataset.decode(tokens_L)) if dataset.kind == "text" else ""
            for tokens_L in dataset.tokens_NxL
        ]
        self.per_attack = {s: samples.vulnerability(x, labels_TxN) for s, x in scores.items()}
        self.summaries = {
            spec: exposure.exposure_summary(values, labels_TxN, self.cf_mem_N)
            for spec, values in self.per_attack.items()
        }
        self.columns = samples.sample_columns(
            keep_SxN=keep_SxN,
            labels_TxN=labels_TxN,
            cf_mem_N=self.cf_mem_N,
            snippets=snippets,
            per_attack=self.per_attack,
            extra=extra,
        )

    def select(self, num: int, out: Path, labels_TxN: np.ndarray, results: dict) -> None:
        """The K most vulnerable samples under the ranking attack, with their member evidence."""
        values = self.per_attack[self.ranking]
        samples_K = leakage.rank_samples(values["auc"], values["rank_in"], num)
        exposed_N = np.zeros(len(values["auc"]), dtype=bool)
        exposed_N[self.summaries[self.ranking]["exposed_samples"]] = True
        evidence_KxL = None
        if self.evidence_file is None:
            self.notes.append(
                "No attack recorded per-position evidence, so the samples are not shaded; "
                "re-run the attack stage with --evidence_attack=profile."
            )
        elif not (out / self.evidence_file).is_file():
            self.notes.append(f"No shading: {out / self.evidence_file} is missing.")
        else:
            evidence = np.load(out / self.evidence_file, mmap_mode="r")
            expected = (labels_TxN.shape[0], labels_TxN.shape[1], results["seq_len"])
            if evidence.shape != expected:
                raise ValueError(
                    f"{out / self.evidence_file}: shape {evidence.shape}, expected T x N x L"
                )
            evidence_KxL = leakage.member_evidence(evidence, labels_TxN, samples_K)
        self.evidence_KxL = evidence_KxL
        self.items = []
        for k, n in enumerate(samples_K):
            e_L = None if evidence_KxL is None else evidence_KxL[k]
            self.items.append(
                leakage.Vulnerable(
                    sample=int(n),
                    auc=float(values["auc"][n]),
                    pvalue=float(values["pvalue"][n]),
                    tpr0=float(values["tpr0"][n]),
                    rank_in=float(values["rank_in"][n]),
                    in_targets=int(labels_TxN[:, n].sum()),
                    cf_mem=float(self.cf_mem_N[n]),
                    exposed=bool(exposed_N[n]),
                    total=None if e_L is None else float(e_L.sum()),
                    largest_share=None if e_L is None else leakage.largest_share(e_L),
                    top_positions=() if e_L is None else leakage.top_positions(e_L),
                )
            )

    def reason(self, head: Headline, results: dict) -> str:
        """Which attacks rank and shade, and why (plain report text)."""
        text = ranking_reason(results, head)
        if self.evidence_KxL is not None:
            text += (
                f" Positions are shaded by the evidence of `{self.evidence_spec}`, whose "
                "per-token terms are stable (see the definition below)."
            )
        return " ".join([text, *self.notes])

    def concentration(self) -> str:
        """The largest-position shares of the items shown, in words (empty without evidence)."""
        shares = [item.largest_share for item in self.items if item.largest_share is not None]
        if not shares:
            return ""
        return (
            f"Concentration: the largest single position carries {100 * min(shares):.0f}–"
            f"{100 * max(shares):.0f}% (median {100 * float(np.median(shares)):.0f}%) of the "
            f"evidence total of the {len(shares)} samples shown with a positive total."
        )
