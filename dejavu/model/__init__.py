"""The avatar model: what an avatar is at given parameters (:class:`~dejavu.model.avatar_model.AvatarModel`),
with the maths it needs: blend weights (:mod:`~dejavu.model.blend`), rigid corrections
(:mod:`~dejavu.model.rigid`) and the cameras that look at it from around the head (:mod:`~dejavu.model.views`)."""
