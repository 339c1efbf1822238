"""PatchGatedViT and RoutedMLP: one expert per token, balance loss, MACs under routing, absent
sensors, router gradients, training, config round trip."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from fusion.data.collate import Batch, collate_samples
from fusion.data.sample import Sample
from fusion.models import NoDataError, count_macs
from fusion.models.gated import GatedClassifier, PatchGatedViT, average_macs
from fusion.models.routing import RoutedMLP, switch_balance_loss
from tests.models.conftest import WIDTH

SAR = "syn_sar"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One thread: these small models only lose time to thread hand-offs on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _gated(batch: Batch, **kw: object) -> PatchGatedViT:
    return PatchGatedViT(batch.streams, width=WIDTH, depth=2, heads=2, **kw)  # type: ignore[arg-type]


def _force(model: PatchGatedViT, choice: int) -> None:
    """Make every router pick ``choice`` for every token (large bias)."""
    with torch.no_grad():
        for block in model.blocks:
            router = block.mlp.router
            assert router is not None
            router.weight.zero_()
            router.bias.fill_(-10.0)
            router.bias[choice] = 10.0


def test_each_token_goes_to_exactly_one_expert() -> None:
    mlp = RoutedMLP(8, 4, experts=3, skip=True).eval()
    with torch.no_grad():
        mlp.router.weight.normal_(std=2.0)  # type: ignore[union-attr]
    x = torch.randn(50, 8)
    seen = torch.zeros(50, dtype=torch.int64)
    calls: list[int] = []
    for e, expert in enumerate(mlp.experts):
        expert.register_forward_hook(lambda _m, _i, _o, e=e: calls.append(e))
    out = mlp(x)
    probs, choice = mlp.route(x)
    assert sorted(calls) == sorted(set(calls))  # each expert runs at most once, on its tokens
    for e, expert in enumerate(mlp.experts):
        idx = (choice == e).nonzero().flatten()
        seen[idx] += 1
        # a token's output is its own expert's, scaled by the gate: no other expert touched it
        gate = probs[idx, e].unsqueeze(1)
        assert torch.allclose(out[idx], gate * expert(x[idx]), atol=1e-6)
    skipped = choice == mlp.num_experts
    seen[skipped] += 1
    assert bool((seen == 1).all())
    assert bool((out[skipped] == 0).all()) and skipped.any()
    assert mlp.last_counts.tolist() == torch.bincount(choice, minlength=4).tolist()
    assert int(mlp.last_counts.sum()) == 50


def test_balance_loss_minimal_when_uniform_larger_when_collapsed() -> None:
    n, t = 5, 100
    uniform = switch_balance_loss(torch.full((t, n), 1.0 / n), torch.arange(t) % n)
    assert float(uniform) == pytest.approx(1.0)
    collapsed = switch_balance_loss(
        F.one_hot(torch.zeros(t, dtype=torch.int64), n).float(), torch.zeros(t, dtype=torch.int64)
    )
    assert float(collapsed) == pytest.approx(float(n))
    # any other routing of the same tokens lies in between
    probs = torch.softmax(torch.randn(t, n) * 3, dim=1)
    mixed = switch_balance_loss(probs, probs.argmax(dim=1))
    assert float(uniform) <= float(mixed) + 1e-6 < float(collapsed)


def test_dense_variant_has_same_width_and_parameters(raster_batch: Batch) -> None:
    gated = _gated(raster_batch, experts=4, mlp_ratio=2.0)
    dense = gated.dense_variant()
    assert gated.routed and not dense.routed
    assert dense.config()["expert_hidden"] == 4 * gated.config()["expert_hidden"] == 2 * WIDTH
    router = sum(b.mlp.router.weight.numel() + b.mlp.router.bias.numel() for b in gated.blocks)
    n_gated = sum(p.numel() for p in gated.parameters())
    n_dense = sum(p.numel() for p in dense.parameters())
    # experts' first-layer biases: K·(H/K) = H, second-layer biases: K·D vs D
    assert n_gated - n_dense == router + 3 * WIDTH * len(gated.blocks)
    assert dense(raster_batch).shape == gated(raster_batch).shape == (4, WIDTH)
    assert float(dense.balance_loss()) == 0.0


@torch.no_grad()
def test_macs_under_routing_count_only_the_expert_used(raster_batch: Batch) -> None:
    gated = _gated(raster_batch, experts=4, mlp_ratio=2.0).eval()
    dense = gated.dense_variant().eval()
    tokens = int(gated.tokens(raster_batch).counts().sum())
    depth, d, hidden = len(gated.blocks), WIDTH, 2 * WIDTH
    router = tokens * depth * d * 5
    dense_macs = count_macs(dense, raster_batch)
    _force(gated, 4)  # every token skips
    skip_macs = count_macs(gated, raster_batch)
    assert gated.routing_fractions()[:, 4].tolist() == [1.0] * depth
    assert skip_macs == dense_macs - tokens * depth * 2 * d * hidden + router
    _force(gated, 1)  # every token to one expert of hidden / 4
    one_macs = count_macs(gated, raster_batch)
    assert one_macs == dense_macs - tokens * depth * 2 * d * (hidden - hidden // 4) + router
    assert skip_macs < one_macs < dense_macs


def test_average_macs_is_per_sample(raster_samples: list[Sample]) -> None:
    model = _gated(collate_samples(raster_samples)).train()
    avg = average_macs(model, raster_samples[1:3])
    singles = [count_macs(model.eval(), collate_samples([s])) for s in raster_samples[1:3]]
    assert singles[0] != singles[1]  # sample 2 has cloud-masked cells, so fewer tokens
    assert avg == pytest.approx(sum(singles) / 2)
    model.train()
    average_macs(model, raster_samples[:1])
    assert model.training  # mode restored


@torch.no_grad()
def test_missing_sensor_tokens_are_absent(raster_samples: list[Sample]) -> None:
    full = collate_samples(raster_samples)
    model = _gated(full).eval()
    mixed = collate_samples(
        [s if i != 1 else s.without("syn_sar") for i, s in enumerate(raster_samples)]
    )
    packed = model.tokens(mixed)
    sar = packed.keys.index(SAR)
    assert not bool(((packed.sample == 1) & (packed.stream == sar)).any())
    assert bool(((packed.sample == 0) & (packed.stream == sar)).any())
    counts_full = model.tokens(full).counts()
    alone = model.tokens(collate_samples([raster_samples[1].without("syn_sar")])).counts()
    assert packed.counts()[1] == alone[0] < counts_full[1]
    # only real tokens are routed: padding never reaches an expert
    model(mixed)
    assert all(int(b.mlp.last_counts.sum()) == packed.values.shape[0] for b in model.blocks)
    # the sample's embedding is the one it gets in a batch that never had SAR at all
    out = model(mixed)[1]
    ref = model(collate_samples([raster_samples[1].without("syn_sar")]))[0]
    assert torch.allclose(out, ref, atol=1e-5)
    # ...and not the one it gets with SAR fed as zeros
    zeros = collate_samples(raster_samples)
    zeros.data[SAR][1] = 0.0
    assert not torch.allclose(model(zeros)[1], ref, atol=1e-3)


def test_no_token_at_all_is_refused(raster_samples: list[Sample]) -> None:
    batch = collate_samples(raster_samples[:2])
    batch.present = {k: torch.tensor([True, False]) for k in batch.present}
    with pytest.raises(NoDataError, match=r"sample\(s\) \[1\]"):
        _gated(batch)(batch)


def test_gradients_reach_the_router(raster_batch: Batch) -> None:
    model = GatedClassifier(_gated(raster_batch), 3)
    labels = torch.tensor([0, 1, 2, 0])
    # the task loss alone reaches the router (through the gate that scales each expert's output)
    F.cross_entropy(model(raster_batch), labels).backward()
    routers = [b.mlp.router for b in model.encoder.blocks]
    assert all(r.weight.grad is not None and r.weight.grad.abs().sum() > 0 for r in routers)
    model.zero_grad()
    model(raster_batch)
    model.balance_loss().backward()
    assert all(r.weight.grad is not None and r.weight.grad.abs().sum() > 0 for r in routers)


def test_tiny_model_trains(raster_batch: Batch, series_batch: Batch) -> None:
    for batch in (raster_batch, series_batch):
        model = GatedClassifier(
            PatchGatedViT(batch.streams, width=16, depth=1, heads=2, series_tokens=5), 2
        )
        labels = torch.tensor([0, 1, 1, 0])
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        losses = []
        for _ in range(15):
            loss = F.cross_entropy(model(batch), labels) + 0.01 * model.balance_loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0] * 0.8


def test_config_round_trip(raster_batch: Batch) -> None:
    model = _gated(raster_batch, experts=3, skip=False, activation="relu").eval()
    again = PatchGatedViT.from_config(model.config())
    again.load_state_dict(model.state_dict())
    again.eval()
    assert torch.equal(again(raster_batch), model(raster_batch))
    with pytest.raises(ValueError, match="not PatchGatedViT"):
        PatchGatedViT.from_config({**model.config(), "model": "FusionEncoder"})


def test_pixel_stage_round_trips_and_older_configs_still_load(raster_batch: Batch) -> None:
    model = _gated(raster_batch, pixel_channels=4).eval()
    plain = _gated(raster_batch)
    assert sum(p.numel() for p in model.parameters()) != sum(p.numel() for p in plain.parameters())
    again = PatchGatedViT.from_config(model.config())
    again.load_state_dict(model.state_dict())
    assert torch.equal(again.eval()(raster_batch), model(raster_batch))
    old = plain.config()
    del old["pixel_channels"]  # a config written before the option existed
    assert PatchGatedViT.from_config(old).config() == plain.config()


def test_drop_path_acts_in_training_only_and_round_trips(raster_batch: Batch) -> None:
    model = _gated(raster_batch, drop_path=0.5)
    plain = _gated(raster_batch)
    plain.load_state_dict(model.state_dict())
    model.eval()
    plain.eval()
    assert torch.equal(model(raster_batch), plain(raster_batch))  # identity in eval
    model.train()
    plain.train()
    torch.manual_seed(3)
    dropped = model(raster_batch)
    assert not torch.allclose(dropped, plain(raster_batch))
    again = PatchGatedViT.from_config(model.config())
    assert again.config()["drop_path"] == 0.5
    old = plain.config()
    del old["drop_path"]  # a config written before the option existed
    assert PatchGatedViT.from_config(old).config() == plain.config()
    with pytest.raises(ValueError, match="drop_path"):
        _gated(raster_batch, drop_path=1.0)


def test_deeper_stems_round_trip_and_one_block_keeps_its_state_keys(raster_batch: Batch) -> None:
    plain, deep = _gated(raster_batch), _gated(raster_batch, stem_blocks=3)
    extra = set(deep.state_dict()) - set(plain.state_dict())
    assert set(plain.state_dict()) <= set(deep.state_dict())  # old checkpoints' keys unchanged
    assert extra and all(".more_blocks." in k for k in extra)
    deep.eval()
    again = PatchGatedViT.from_config(deep.config())
    again.load_state_dict(deep.state_dict())
    assert torch.equal(again.eval()(raster_batch), deep(raster_batch))
    with torch.no_grad():  # the extra blocks act: zeroing their output layers changes the result
        before = deep(raster_batch)
        for name, p in deep.named_parameters():
            if ".more_blocks." in name and ".pw." in name:
                p.zero_()
        assert not torch.allclose(deep(raster_batch), before)
    old = plain.config()
    del old["stem_blocks"]  # a config written before the option existed
    assert PatchGatedViT.from_config(old).config() == plain.config()
    with pytest.raises(ValueError, match="at least 1 residual block"):
        _gated(raster_batch, stem_blocks=0)
