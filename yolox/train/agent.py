"""The torchrun elastic agent this project launches: ``python -m yolox.train.agent [torchrun arguments]``.

It is ``torch.distributed.run`` with one setting: ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``. With the c10d
rendezvous, PyTorch (2.5 to 2.13 at least) otherwise hands the workers one TCPStore for the agent's whole
life, shared by every rendezvous round. After an elastic restart the new workers of one node can then read
the addresses their peers published in the previous round (``default_pg`` keys are not prefixed per round:
the prefix would be ``TORCHELASTIC_RESTART_COUNT``, which each node counts on its own) and fail with
``Gloo connectFullMesh failed ... Connection refused`` (NCCL: "Failed to connect") until the restarts are
used up. Seen here with two agents (``tests/train/test_multinode.py``); PyTorch issue #135712. With the setting,
rank 0 of each round hosts a fresh store, so every round starts clean.
"""

from __future__ import annotations

import os

SHARE_STORE_ENV = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"


def main() -> None:
    os.environ[SHARE_STORE_ENV] = "1"
    from torch.distributed.run import main as torchrun_main

    torchrun_main()


if __name__ == "__main__":
    main()
