"""The preprocess service: contributed documents in, processed shards and facts out.

The pipeline uses both cores with worker processes, one per core; numpy's BLAS (the
language model's product) must not start threads of its own in each of them, which would
only compete for the same cores. This runs before the first import of numpy in a process
that imports this package first (the service, its workers, `1tt estimate`, the bench).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
