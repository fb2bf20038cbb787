"""Host buffers that a GPU extraction copies into while the forward keeps running.

Why: saving every token of every layer the usual way (``.save()`` or ``output_hidden_states``, then ``.cpu()``)
serialises a device-to-host copy after the forward and cost 5.9-6.9x a plain forward on an H200. Copying each
site's output, as soon as it exists, into preallocated pinned host memory on a side CUDA stream overlaps the
copies with the remaining layers' compute (measured at ~1.00x in a hook prototype; BENCHMARKS.md has ours).

On the CPU there is nothing to overlap; the same code path then copies synchronously into ordinary buffers, so
its correctness is tested on machines without a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


class HostStaging:
    """Reusable host buffers, one per site, grown on demand, plus the side stream copies run on."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.stream: torch.cuda.Stream | None = torch.cuda.Stream(device) if self.cuda else None
        self._storage: dict[str, torch.Tensor] = {}

    def buffers(self, shapes: Mapping[str, Sequence[int]], dtype: torch.dtype) -> list[torch.Tensor]:
        """Views of the right shape into each site's storage (reallocated only when a batch outgrows it)."""
        views = []
        for site, shape in shapes.items():
            numel = 1
            for size in shape:
                numel *= int(size)
            storage = self._storage.get(site)
            if storage is None or storage.numel() < numel or storage.dtype != dtype:
                storage = torch.empty(numel, dtype=dtype, pin_memory=self.cuda)
                self._storage[site] = storage
            views.append(storage[:numel].view(*shape))
        return views

    def wait(self) -> None:
        """Block until every copy queued on the side stream has landed in host memory."""
        if self.stream is not None:
            self.stream.synchronize()

    @property
    def bytes_allocated(self) -> int:
        return sum(s.numel() * s.element_size() for s in self._storage.values())
