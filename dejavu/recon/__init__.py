"""Single-image reconstruction (paper section 3.3): the generalized network, its data and training.

Modules: ``network`` (encoder-decoder -> UV offsets), ``config`` (dataclass configs, presets),
``data`` (synthetic multi-view generator, tracked photo folders and videos, shard format),
``train`` (training loop, weights file), ``predict`` (photo -> avatar), ``evaluate`` (single-image
metrics). Guide: docs/RECONSTRUCTION.md. Heavy modules are imported lazily by their users.
"""
