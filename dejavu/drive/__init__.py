"""What drives an avatar: per-frame expression, jaw, eyes and camera sequences read from files."""
