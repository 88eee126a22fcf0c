"""Suite-wide settings. `make test` runs the suite on both cores with pytest-xdist (`-n 2 --dist loadfile`: a test
file's tests stay on one worker, so module-scoped servers and phantoms are shared as before); each worker then uses
one thread for torch and for the processes it starts, so the two workers do not fight over the cores."""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
