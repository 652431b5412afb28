"""Personalization from a monocular video (paper section 3.4): mean offsets, a global delta
(stage 1), then K expression-blended maps (stage 2). Entry point: :func:`dejavu.personalize.train.personalize`."""
