"""seqmia_jax: membership-inference audits of sequence models in JAX.

Stages, each reading and writing a work directory:
data -> models -> ensemble training -> scoring -> attacks -> report.
"""

__version__ = "0.1.0"
