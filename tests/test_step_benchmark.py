"""benchmarks/step.py's PyTorch side: the twin nets, plain or under autocast."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import step as bench  # noqa: E402


@pytest.mark.parametrize("autocast, dtype", [(None, "float32"), ("bfloat16", "bfloat16")])
def test_torch_autocast_runs_the_convolutions_in_that_dtype(autocast, dtype):
    torch = pytest.importorskip("torch")
    _, models = bench.minigan_step(4, "cpu", "doodles")
    step = bench.torch_step(4, "cpu", models, autocast)
    G, D = step.nets
    seen = []
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    handle = convs[-1].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    before = [p.detach().clone() for p in G.parameters()]
    step()
    handle.remove()
    assert seen and set(seen) == {getattr(torch, dtype)}   # D on real, on fake, in G's step
    assert all(p.dtype == torch.float32 for p in G.parameters())    # the weights stay float32
    assert any(not torch.equal(a, p) for a, p in zip(before, G.parameters(), strict=True))


def test_autocast_without_torch_compared_is_refused(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--torch-autocast", "bfloat16"])
    assert "add --compare torch" in capsys.readouterr().err


def test_compare_with_autocast_times_torch_both_ways_beside_minigan():
    pytest.importorskip("torch")
    row = bench.compare(2, "cpu", 2, 0, True, "doodles", 1, "bfloat16")
    for k in ("minigan_median_s", "torch_median_s", "torch_bfloat16_median_s"):
        assert row[k] > 0
    assert row["ratio"] == row["minigan_median_s"] / row["torch_median_s"]
    assert (row["ratio_to_torch_bfloat16"]
            == row["minigan_median_s"] / row["torch_bfloat16_median_s"])


@pytest.mark.skipif(not bench._blas.numpy_openblas(), reason="needs NumPy's OpenBLAS")
def test_blas_spin_times_each_setting_in_turns_and_leaves_the_last_in_force(monkeypatch):
    import os

    seen = []
    real = bench._blas.set_spin

    def spy(e):
        seen.append(e)
        return real(e)

    monkeypatch.setattr(bench._blas, "set_spin", spy)
    before = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
    try:
        row = bench.spins(2, "cpu", 2, 0, "doodles", 1, [28, 12])
    finally:
        real(int(before or bench._blas.SPIN))
    medians, ratios = row["blas_spin_median_s"], row["ratio_to_first"]
    assert set(medians) == set(ratios) == {"28", "12"}
    assert all(v > 0 for v in medians.values()) and ratios["28"] == 1.0
    assert ratios["12"] == medians["12"] / medians["28"]
    assert seen[:2] == [28, 12] and set(seen) == {28, 12}   # switched at each turn of blocks
    assert all(a != b for a, b in zip(seen, seen[1:]))       # and only then


@pytest.mark.parametrize("argv, says", [
    (["--blas-spin", "28", "3"], "exponents from 4 to 30"),
    (["--blas-spin", "12", "--compare", "torch"], "leave out --compare"),
])
def test_blas_spin_refuses_what_it_cannot_time(argv, says, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert says in capsys.readouterr().err
