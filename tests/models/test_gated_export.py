"""What of the routed MLP the int8 student path can already run (see fusion/models/gated.py):
the router's choice and ReLU experts as 1×1 convs; the gate, gather/scatter and run-time token
counts are outside it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from fusion.deploy.golden import run_conv
from fusion.deploy.int8 import QConv, QParams, make_conv
from fusion.models.routing import RoutedMLP

D, H, K, T = 16, 8, 3, 256


def _pw(linear: torch.nn.Linear, qin: QParams, qout: QParams, relu: bool) -> QConv:
    w = linear.weight.detach().double().numpy()
    b = linear.bias.detach().double().numpy()
    return make_conv("pw", w, b, 1, (w.shape[1], T), (w.shape[0], T), qin, qout, relu)


def _range(x: torch.Tensor) -> QParams:
    return QParams.from_range(float(x.min()), float(x.max()))


def test_router_choice_and_relu_experts_run_on_the_int8_kernels() -> None:
    torch.manual_seed(0)
    mlp = RoutedMLP(D, H, experts=K, skip=True, activation="relu").eval()
    with torch.no_grad():
        mlp.router.weight.normal_(std=0.5)  # type: ignore[union-attr]
    x = torch.randn(T, D)  # tokens after LayerNorm (which itself has no int8 kernel)
    qin = _range(x)
    xq = qin.quantize(x.T.unsqueeze(0).double())  # (1, D, T): the token grid as a 1×T image
    with torch.no_grad():
        probs, choice = mlp.route(x)
        logits = mlp.router(x)  # type: ignore[misc]
        # router logits: a pointwise conv; top-1 on int8 logits is an argmax (no softmax needed)
        router = _pw(mlp.router, qin, _range(logits), relu=False)  # type: ignore[arg-type]
        q_choice = torch.from_numpy(run_conv(xq, router)[0].astype(np.int64)).argmax(dim=0)
        agree = float((q_choice == choice).float().mean())
        assert agree > 0.9, agree
        for e, expert in enumerate(mlp.experts):
            idx = (choice == e).nonzero().flatten()
            hidden = torch.relu(expert.fc1(x))
            ref = expert(x)
            fc1 = _pw(expert.fc1, qin, _range(hidden), relu=True)
            fc2 = _pw(expert.fc2, fc1.output, _range(ref), relu=False)
            # Each expert sees only its tokens: its layer shape is that count, known at run time
            # only. The exported C kernels fix it at export (ArenaPlan), hence the replace().
            n = int(idx.numel())
            fc1 = replace(fc1, in_shape=(D, n), out_shape=(H, n))
            fc2 = replace(fc2, in_shape=(H, n), out_shape=(D, n))
            yq = run_conv(run_conv(xq[:, :, idx.numpy()], fc1), fc2)
            y = fc2.output.dequantize(yq)[0].T  # (n, D)
            err = np.abs(y - ref[idx].double().numpy()).max()
            assert err < 4 * fc1.output.scale + 4 * fc2.output.scale, err
    # the gate p(choice) that scales each expert's output is a softmax probability: no kernel
    assert bool((probs.gather(1, choice.unsqueeze(1)) < 1).all())
