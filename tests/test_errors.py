"""Bad input gets a clear error: the layer or op, what it expected and what it got."""

import re

import numpy as np
import pytest

import minigan as mg
from minigan import backend, nn
from minigan import functional as F


def f32(*shape, dtype=np.float32):
    return mg.tensor(np.zeros(shape, dtype))


def raises(exc, *fragments):
    """pytest.raises matching every fragment, in order, in the message."""
    return pytest.raises(exc, match=".*".join(re.escape(f) for f in fragments))


CONV = "Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1), padding=(0, 0))"


def test_wrong_ndim():
    with raises(ValueError, CONV, "expected a 4-D input, got shape (1, 5, 5)"):
        nn.Conv2d(1, 2, 3)(f32(1, 5, 5))
    with raises(ValueError, "ConvTranspose2d(2, 1", "expected a 4-D input, got shape (2, 4)"):
        nn.ConvTranspose2d(2, 1, 4, 2, 1)(f32(2, 4))
    with raises(ValueError, "Linear(in_features=4, out_features=2, bias=True)",
                "expected a 2-D input, got shape (2, 3, 4)"):
        nn.Linear(4, 2)(f32(2, 3, 4))
    with raises(ValueError, "BatchNorm1d(3, eps=1e-05, momentum=0.1)",
                "expected a 2-D or 3-D input, got shape (2, 3, 2, 2)"):
        nn.BatchNorm1d(3)(f32(2, 3, 2, 2))
    with raises(ValueError, "BatchNorm2d(3", "expected a 4-D input, got shape (2, 3)"):
        nn.BatchNorm2d(3)(f32(2, 3))
    with raises(ValueError, "conv2d: expected a 4-D input (N, C, H, W), got shape (5, 5)"):
        F.conv2d(f32(5, 5), f32(1, 1, 3, 3))
    with raises(ValueError, "upsample_nearest2d: expected (N, C, H, W), got (2, 3)"):
        F.upsample_nearest2d(f32(2, 3))
    with raises(ValueError, "batch_norm: expected input (N, C) or (N, C, ...), got (2,)"):
        F.batch_norm(f32(2), None, None, training=True)


def test_channel_mismatch():
    with raises(ValueError, CONV, "expected 1 channels/features at dim 1",
                "got input of shape (2, 3, 5, 5)"):
        nn.Conv2d(1, 2, 3)(f32(2, 3, 5, 5))
    with raises(ValueError, "Linear(in_features=4", "expected 4 channels/features at dim 1",
                "got input of shape (2, 3)"):
        nn.Linear(4, 2)(f32(2, 3))
    with raises(ValueError, "BatchNorm2d(3", "expected 3 channels/features at dim 1",
                "got input of shape (2, 4, 2, 2)"):
        nn.BatchNorm2d(3)(f32(2, 4, 2, 2))
    net = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(5, 1))
    with raises(ValueError, "Linear(in_features=5", "got input of shape (2, 4)"):
        net(f32(2, 3))  # the error names the layer inside the stack that failed


def test_weight_shape_mismatch():
    with raises(ValueError, "conv2d: input has 3 channels but the weight (2, 4, 3, 3) expects 4"):
        F.conv2d(f32(1, 3, 5, 5), f32(2, 4, 3, 3))
    with raises(ValueError, "conv2d: expected a 4-D weight, got shape (2, 3, 3)"):
        F.conv2d(f32(1, 3, 5, 5), f32(2, 3, 3))
    with raises(ValueError, "conv_transpose2d: input has 3 channels but the weight (2, 3, 3, 3) "
                            "expects 2"):
        F.conv_transpose2d(f32(1, 3, 5, 5), f32(2, 3, 3, 3))
    with raises(ValueError, "linear: expected input (N, 4) for weight of shape (2, 4), got input "
                            "of shape (2, 3)"):
        F.linear(f32(2, 3), f32(2, 4))
    with raises(ValueError, "batch_norm: input has 3 channels but running_mean has shape (4,)"):
        F.batch_norm(f32(2, 3), np.zeros(4), np.ones(3))
    with raises(ValueError, "batch_norm: input has 3 channels but weight has shape (2,)"):
        F.batch_norm(f32(2, 3), None, None, f32(2), None, training=True)


@pytest.mark.parametrize("call,name", [
    (lambda x: nn.Conv2d(1, 2, 3)(x.reshape(1, 1, 3, 3)), CONV),
    (lambda x: nn.Linear(9, 2)(x.reshape(1, 9)), "Linear(in_features=9"),
    (lambda x: nn.BatchNorm1d(9)(x.reshape(1, 9)), "BatchNorm1d(9"),
    (lambda x: F.conv2d(x.reshape(1, 1, 3, 3), f32(1, 1, 1, 1)), "conv2d: input must be a float"),
    (lambda x: F.linear(x.reshape(1, 9), f32(2, 9)), "linear: input must be a float array"),
    (lambda x: F.leaky_relu(x), "leaky_relu: input must be a float array"),
    (lambda x: F.relu(x), "relu: input must be a float array"),
    (lambda x: F.tanh(x), "tanh: input must be a float array"),
    (lambda x: F.sigmoid(x), "sigmoid: input must be a float array"),
    (lambda x: nn.LeakyReLU(0.2)(x), "leaky_relu: input must be a float array"),
    (lambda x: F.binary_cross_entropy_with_logits(x, np.zeros(9)),
     "binary_cross_entropy_with_logits: input must be a float array"),
    (lambda x: F.mse_loss(x, np.zeros(9)), "mse_loss: input must be a float array"),
    (lambda x: F.batch_norm(x.reshape(3, 3), None, None, training=True),
     "batch_norm: input must be a float array"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_non_float_data(call, name):
    x = mg.tensor(np.arange(9, dtype=np.uint8))
    with raises(TypeError, name, "uint8"):
        call(x)


def test_mismatched_loss_shapes():
    with raises(ValueError, "binary_cross_entropy_with_logits: input shape (4, 1) and target shape "
                            "(4,) differ"):
        F.binary_cross_entropy_with_logits(f32(4, 1), np.zeros(4))
    with raises(ValueError, "binary_cross_entropy: input shape (4,) and target shape (3,) differ"):
        F.binary_cross_entropy(f32(4), np.zeros(3))
    with raises(ValueError, "mse_loss: input shape (4, 1) and target shape (1, 4) differ"):
        F.mse_loss(f32(4, 1), np.zeros((1, 4)))


def test_other_layer_arguments():
    with raises(ValueError, "Unflatten(dim=1, unflattened_size=(2, 3))",
                "dim 1 of input (2, 5) has 5 elements, expected 6"):
        nn.Unflatten(1, (2, 3))(f32(2, 5))
    with raises(ValueError, "Upsample: only mode='nearest' is implemented, got 'bilinear'"):
        nn.Upsample(mode="bilinear")
    with raises(ValueError, "kernel size 5 is larger than the padded input (3 + 2*0 = 3)"):
        nn.Conv2d(1, 1, 5)(f32(1, 1, 3, 3))


def test_devices_named_in_errors():
    with raises(ValueError, "unknown device 'tpu': use 'cpu' or 'cuda'"):
        mg.tensor([1.0], device="tpu")
    if not mg.cuda_available():
        with raises(RuntimeError, "device 'cuda' was asked for but",
                    backend.cuda_unavailable_reason(), "use --device cpu or MINIGAN_DEVICE=cpu"):
            mg.tensor([1.0], device="cuda")


@pytest.mark.skipif(not mg.cuda_available(),
                    reason=f"mixing devices needs a GPU: {backend.cuda_unavailable_reason()}")
def test_mixed_devices_are_an_error_naming_both():
    a = mg.tensor(np.ones(3, np.float32))
    b = mg.tensor(np.ones(3, np.float32), device="cuda")
    with raises(RuntimeError, "Add: inputs are on different devices (cpu (3,), cuda (3,))",
                ".to(device)"):
        a + b
    with raises(RuntimeError, "different devices"):
        F.conv2d(f32(1, 1, 3, 3), mg.tensor(np.ones((1, 1, 1, 1), np.float32), device="cuda"))
