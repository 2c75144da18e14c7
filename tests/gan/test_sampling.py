import numpy as np
import pytest

import minigan
from minigan import backend
from minigan.gan import build, generate, latent_walk, lerp, slerp
from minigan.gan.sampling import CALIBRATION_SAMPLES, default_calibration_batches


def _net():
    minigan.manual_seed(1)
    G, _, _ = build("atienza", (1, 8, 8), z_dim=8, width=4)   # BatchNorm and Dropout in G
    return G


def test_generate_leaves_the_generator_and_the_random_state_alone():
    G = _net()
    before = {k: v.copy() for k, v in G.state_dict().items()}
    rng_before = backend.rng.get_state()
    z = np.random.default_rng(0).standard_normal((5, 8), dtype=np.float32)
    x = generate(G, z, batch_size=16)
    assert x.shape == (5, 1, 8, 8) and x.dtype == np.float32
    after = G.state_dict()
    for k, v in before.items():
        assert np.array_equal(v, after[k]), f"generate changed {k}"
    assert backend.rng.get_state() == rng_before
    assert all(m.training for m in G.modules())


def test_each_image_depends_only_on_its_own_noise():
    G = _net()
    z = np.random.default_rng(0).standard_normal((20, 8), dtype=np.float32)
    all_at_once = generate(G, z, batch_size=16)
    one = generate(G, z[7:8], batch_size=16)
    np.testing.assert_allclose(one[0], all_at_once[7], atol=1e-6)
    np.testing.assert_array_equal(generate(G, z, batch_size=16), all_at_once)


def test_a_kept_calibration_draws_the_same_images_and_leaves_the_generator_alone():
    G = _net()
    before = {k: v.copy() for k, v in G.state_dict().items()}
    z = np.random.default_rng(0).standard_normal((12, 8), dtype=np.float32)
    fresh = generate(G, z, batch_size=16, seed=3)
    kept = {}
    calls = []
    handle = G[0].register_forward_hook(lambda m, inputs, out: calls.append(inputs[0].shape[0]))
    first = generate(G, z, batch_size=16, seed=3, calibration=kept)
    assert kept["buffers"], "an empty calibration dict is filled"
    assert calls == [16] * (CALIBRATION_SAMPLES // 16) + [12], ("the calibration batches, then "
                                                                "the images")
    stats = [{k: v.copy() for k, v in b.items()} for b in kept["buffers"]]
    calls.clear()
    again = generate(G, z, batch_size=16, seed=3, calibration=kept)
    assert calls == [12], "a kept calibration is not computed again"
    handle.remove()
    np.testing.assert_array_equal(first, fresh)
    np.testing.assert_array_equal(again, fresh)
    for b, s in zip(kept["buffers"], stats, strict=True):   # reusing it changes nothing
        for k in s:
            np.testing.assert_array_equal(b[k], s[k])
    other = generate(G, z, batch_size=16, seed=4)            # other calibration noise differs
    assert not np.array_equal(other, fresh)
    for k, v in G.state_dict().items():
        assert np.array_equal(v, before[k]), f"generate changed {k}"


def test_calibrated_statistics_are_the_population_statistics_within_their_sampling_error():
    """The first BatchNorm's re-estimated mean and variance against the population's, from
    65,536 noise samples through its Linear in float64: within 4 standard errors of an estimate
    from CALIBRATION_SAMPLES noise vectors in batches of 16 (a feature's mean is off by
    z/sqrt(n) of its sd)."""
    G = _net()
    linear, bn = G[0], G[1]
    assert isinstance(bn, minigan.nn.BatchNorm1d)
    kept = {}
    generate(G, np.zeros((1, 8), np.float32), batch_size=16, seed=5, calibration=kept)
    mean, var = kept["buffers"][0]["running_mean"], kept["buffers"][0]["running_var"]
    z = np.random.default_rng(9).standard_normal((65536, 8))
    h = z @ np.asarray(linear.weight.data, np.float64).T + np.asarray(linear.bias.data,
                                                                      np.float64)
    pop_mean, pop_var = h.mean(0), h.var(0)
    n = CALIBRATION_SAMPLES
    sd_mean = np.sqrt(pop_var / n)
    sd_var = pop_var * np.sqrt(2.0 / n)             # Gaussian features: Var(s^2) = 2 sigma^4/n
    assert np.all(np.abs(mean - pop_mean) < 4 * sd_mean + 1e-6)
    assert np.all(np.abs(var - pop_var) < 4 * sd_var + 1e-6)
    # and the estimate is that precise: its error is of the order of the standard error
    assert np.sqrt(np.mean(((mean - pop_mean) / sd_mean) ** 2)) < 2.0


def test_slerp_keeps_the_norm_of_gaussian_noise_and_lerp_does_not():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 100))
    mid_s, mid_l = slerp(a, b, 0.5), lerp(a, b, 0.5)
    norm = (np.linalg.norm(a) + np.linalg.norm(b)) / 2
    assert abs(np.linalg.norm(mid_s) - norm) / norm < 0.05
    assert np.linalg.norm(mid_l) < 0.8 * norm           # the chord cuts through the inside
    np.testing.assert_allclose(slerp(a, b, 0.0), a, atol=1e-12)
    np.testing.assert_allclose(slerp(a, b, 1.0), b, atol=1e-12)
    np.testing.assert_allclose(slerp(a, a, 0.3), a, atol=1e-12)


def test_latent_walk_rows_go_from_one_point_to_another():
    z = latent_walk(3, 5, 8, seed=2)
    assert z.shape == (15, 8) and z.dtype == np.float32
    walks = z.reshape(3, 5, 8)
    assert not np.allclose(walks[:, 0], walks[:, -1])
    np.testing.assert_array_equal(z, latent_walk(3, 5, 8, seed=2))
    with pytest.raises(ValueError, match="slerp"):
        latent_walk(3, 5, 8, method="cubic")


def test_calibrate_gives_the_model_the_statistics_generate_draws_with():
    """What an exported generator holds: after calibrate, G's plain eval-mode output is
    generate's, and the statistics are no longer the stored ones."""
    import copy

    from minigan import no_grad
    from minigan.gan.sampling import calibrate

    G, _, _ = build("dcgan", (1, 28, 28), 8, width=4)
    z = np.random.default_rng(1).standard_normal((5, 8), dtype=np.float32)
    want = generate(copy.deepcopy(G), z, batch_size=16, seed=3)
    before = G.state_dict()["1.running_var"].copy()
    calibrate(G, 8, batch_size=16, seed=3)
    assert not G.training and not np.allclose(G.state_dict()["1.running_var"], before)
    with no_grad():
        got = G(z).data
    np.testing.assert_array_equal(got, want)


def test_the_calibration_draws_the_same_number_of_noise_vectors_whatever_the_batch_size():
    """A run trained at batch 32 is sampled with statistics from as many noise vectors as one
    at batch 64 (64 batches of 32, 32 of 64), not half as many; a size that does not divide
    the total rounds up."""
    for batch, want in ((64, 32), (32, 64), (16, 128), (100, 21)):
        G = _net()
        calls = []
        handle = G[0].register_forward_hook(
            lambda m, inputs, out, calls=calls: calls.append(inputs[0].shape[0]))
        generate(G, np.zeros((3, 8), np.float32), batch_size=batch)
        handle.remove()
        assert calls == [batch] * want + [3]
        assert want == default_calibration_batches(batch)
        assert batch * want >= CALIBRATION_SAMPLES > batch * (want - 1)


def test_the_calibration_stops_at_the_last_batchnorm_with_the_statistics_unchanged(monkeypatch):
    """The layers after G's last BatchNorm (the output convolution, tanh) cannot change the
    statistics, so the calibration does not run them; the statistics, and the images, are
    those of calibrating through the whole G, bit for bit."""
    from minigan.gan import sampling

    G, _, _ = build("dcgan", (1, 28, 28), 8, width=4)
    z = np.random.default_rng(1).standard_normal((5, 8), dtype=np.float32)
    tail = [layer for layer in G][-2:]                 # ConvTranspose2d(4 -> 1), Tanh
    assert isinstance(tail[0], minigan.nn.ConvTranspose2d) and isinstance(tail[1], minigan.nn.Tanh)
    calls = []
    handles = [m.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0])) for m in tail]
    short = {}
    images = generate(G, z, batch_size=16, seed=3, calibration=short)
    assert calls == [5, 5], "the tail runs for the images only, never in the calibration"
    for h in handles:
        h.remove()
    monkeypatch.setattr(sampling, "_through_last_batchnorm", lambda G, bns: G)
    whole = {}
    np.testing.assert_array_equal(generate(G, z, batch_size=16, seed=3, calibration=whole),
                                  images)
    assert len(short["buffers"]) == len(whole["buffers"]) == 3
    for a, b in zip(short["buffers"], whole["buffers"], strict=True):
        for k in b:
            np.testing.assert_array_equal(a[k], b[k])


def test_a_generator_with_its_own_forward_or_pre_hook_is_calibrated_whole():
    """The shortcut is for plain Sequentials: a subclass's forward, or a pre-hook on G that
    changes the noise, must reach the statistics as they reach training."""
    from minigan.gan import sampling

    G, _, _ = build("dcgan", (1, 28, 28), 8, width=4)
    assert sampling._through_last_batchnorm(G, [m for m in G.modules()
                                                if isinstance(m, minigan.nn.BatchNorm1d)]) is not G

    class Doubled(minigan.nn.Sequential):
        def forward(self, x):
            return super().forward(x * 2.0)

    D = Doubled(*list(G))
    assert sampling._through_last_batchnorm(D, []) is D
    handle = G.register_forward_pre_hook(lambda m, args: (args[0] * 2.0,))
    assert sampling._through_last_batchnorm(G, []) is G
    z = np.zeros((2, 8), np.float32)
    hooked = {}
    generate(G, z, batch_size=16, seed=3, calibration=hooked)
    handle.remove()
    doubled = {}
    generate(D, z, batch_size=16, seed=3, calibration=doubled)
    for a, b in zip(hooked["buffers"], doubled["buffers"], strict=True):   # both saw 2 z
        for k in b:
            np.testing.assert_array_equal(a[k], b[k])
    plain = {}
    generate(G, z, batch_size=16, seed=3, calibration=plain)             # saw z itself
    assert not np.allclose(plain["buffers"][0]["running_var"],
                           hooked["buffers"][0]["running_var"])
