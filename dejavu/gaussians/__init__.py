"""The UV Gaussian map: 13 channels per texel on a head model's UV layout (paper section 3.2)."""
