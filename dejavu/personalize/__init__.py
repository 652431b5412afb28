"""Personalization from a monocular video (paper section 3.4).

:mod:`dejavu.personalize.pipeline` runs it (``personalize()``); :mod:`~dejavu.personalize.train` holds the
two-stage trainer, :mod:`~dejavu.personalize.frames` the training frames, :mod:`~dejavu.personalize.pose`
the head-pose fits, :mod:`~dejavu.personalize.evaluate` the held-out evaluation.
"""
