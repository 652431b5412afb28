"""``dejavu bench render`` runs end to end and writes the documented JSON keys."""

from __future__ import annotations

import json

from dejavu.cli import main


def test_bench_render_json(tmp_path, cpu_backend, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "render", "--gaussians", "300", "--resolution", "32", "--repeats", "1",
                 "--reference-repeats", "1", "--stages", "--numba-reference", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    for key in ("backend", "tile_kernels", "gaussians", "resolution", "batch", "forward_s", "forward_backward_s",
                "numba_forward_s", "numba_forward_backward_cpu_s", "reference_forward_backward_s", "speedup",
                "images_per_s", "machine"):
        assert key in result, key
    assert result["gaussians"] == 300 and result["forward_s"] > 0
    assert "speed-up" in capsys.readouterr().out
    # --stages: every stage timed, and the module's functions put back afterwards
    from dejavu.bench.render import CPU_STAGES
    from dejavu.render import cpu

    assert set(result["stage_cpu_s"]) == set(CPU_STAGES) and result["stage_cpu_s"]["_forward_tiles"] > 0
    assert all(getattr(cpu, name).__module__ == cpu.__name__ for name in CPU_STAGES)


def test_bench_animate_reports_rendering_and_encoding(tmp_path, cpu_backend, capsys):
    path = tmp_path / "animate.json"
    assert main(["bench", "animate", "--uv-size", "16", "--frames", "4", "--chunk", "2", "--resolution", "32",
                 "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    assert result["frames"] == 4 and result["resolution"] == 32 and result["avatar"] == "builtin-flat-uv16"
    assert result["fps"] > 0 and result["encode_seconds"] > 0 and 0 < result["fps_with_encoding"] < result["fps"]
    assert "encoding" in capsys.readouterr().out
