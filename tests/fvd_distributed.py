"""Run under torchrun by tests/test_fvd.py: each process updates the streaming FVD with its share of the videos."""

import sys

import numpy as np
import torch.distributed as dist

from i3d.fvd import FrechetVideoDistance

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
real, fake = np.load(sys.argv[1]), np.load(sys.argv[2])
metric = FrechetVideoDistance("google-research", batch_size=2)
metric.update(real[rank::world], real=True)
metric.update(fake[rank::world], real=False)
value = metric.compute()
if rank == 0:
    with open(sys.argv[3], "w") as file:
        file.write(repr(value))
dist.destroy_process_group()
