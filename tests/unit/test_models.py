import json

import pytest
import torch

import kernels
from tests.conftest import random_planes
from vsr_plugin.engine import Upscaler
from vsr_plugin.models import (DOWN_PRESETS, PRESETS, CheckpointError, Downsampler, DownsamplerConfig,
                               PooledSelfAttention, Upsampler, UpsamplerConfig, load_upsampler, save_upsampler)


def randomised(config: UpsamplerConfig, seed: int = 0) -> Upsampler:
    torch.manual_seed(seed)
    net = Upsampler(config)
    torch.nn.init.normal_(net.tail.weight, std=0.02)
    return net.eval()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_fresh_network_returns_the_bilinear_base(preset):
    """The tail starts at zero, so an untrained upsampler is exactly the bilinear base."""
    net = Upsampler(PRESETS[preset])
    y, u, v = random_planes(1, 13, 10, 8)
    out = Upscaler(net, device="cpu").upscale_planes(y, u, v, bits=8)
    zero = torch.zeros(1, 24, 7, 5)
    for a, b in zip(out, kernels.unpack_upscale(zero, y, u, v, bits=8, scale=2)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_scales_construct_and_run(scale):
    net = randomised(UpsamplerConfig(scale=scale, channels=16, blocks=2))
    packed = kernels.pack(*random_planes(2, 11, 6, 10), bits=10)
    assert net(packed).shape == (2, 6 * scale * scale, 6, 3)
    y, u, v = Upscaler(net, device="cpu").upscale_planes(*random_planes(2, 11, 6, 10), bits=10)
    assert y.shape == (2, 11 * scale, 6 * scale) and u.shape == (2, (11 * scale + 1) // 2, 3 * scale)
    assert y.dtype == torch.uint16


def test_config_validation():
    with pytest.raises(ValueError, match="scale must be"):
        UpsamplerConfig(scale=1)
    with pytest.raises(ValueError, match="unknown UpsamplerConfig keys: depth"):
        UpsamplerConfig.from_dict({"depth": 3})


def test_attention_block_starts_as_identity_and_mixes_globally():
    att = PooledSelfAttention(16, pool=4)
    x = torch.randn(2, 16, 13, 22)  # not a multiple of the pool
    assert torch.equal(att(x), x)
    with torch.no_grad():
        att.gamma.fill_(1.0)
    y = att(x)
    assert y.shape == x.shape and not torch.equal(y, x)
    x2 = x.clone()
    x2[:, :, 12, 21] += 5.0  # far corner
    assert not torch.allclose(att(x2)[:, :, 0, 0], y[:, :, 0, 0])  # reaches the opposite corner


def test_attention_switch_in_config_changes_reach():
    far = lambda net: _corner_influence(net)  # noqa: E731
    plain = randomised(UpsamplerConfig(channels=16, blocks=2))
    att = randomised(UpsamplerConfig(channels=16, blocks=2, attention=True, attention_pool=4))
    with torch.no_grad():
        next(m for m in att.modules() if isinstance(m, PooledSelfAttention)).gamma.fill_(1.0)
    assert plain.receptive_radius == 4 and att.receptive_radius is None
    assert far(plain) == 0.0
    assert far(att) > 0.0


def _corner_influence(net: Upsampler) -> float:
    x = torch.zeros(1, 6, 24, 24)
    x2 = x.clone()
    x2[:, :, -1, -1] = 1.0
    with torch.no_grad():
        return float((net(x2)[:, :, 0, 0] - net(x)[:, :, 0, 0]).abs().max())


def test_checkpoint_round_trip(tmp_path):
    net = randomised(UpsamplerConfig(channels=16, blocks=2, attention=True))
    save_upsampler(tmp_path / "m", net, training={"steps": 5})
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["format"] == "vsr-weights" and meta["format_version"] == 1 and meta["kind"] == "upsampler"
    assert meta["config"]["channels"] == 16 and meta["config"]["scale"] == 2 and meta["training"] == {"steps": 5}
    loaded, info = load_upsampler(tmp_path / "m.safetensors")
    assert info.sha256 == meta["sha256"] and info.training["steps"] == 5
    for (k, a), (k2, b) in zip(net.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert not any(p.suffix in (".pt", ".pth", ".pkl") for p in tmp_path.iterdir())


def _saved(tmp_path):
    net = randomised(UpsamplerConfig(channels=16, blocks=2))
    save_upsampler(tmp_path / "m", net)
    return tmp_path / "m.safetensors", tmp_path / "m.json"


def _edit(meta_path, **changes):
    meta = json.loads(meta_path.read_text())
    meta.update(changes)
    meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize("change,message", [
    ({"format_version": 2}, "format version 2 is not supported"),
    ({"format": "something-else"}, "not a vsr weights file"),
    ({"kind": "downsampler"}, "holds a 'downsampler' network"),
    ({"config": {"channels": 32, "blocks": 2, "scale": 2}}, "do not fit the architecture"),
    ({"config": {"channels": 16, "blocks": 2, "scale": 2, "width": 3}}, "unknown UpsamplerConfig keys"),
    ({"config": {"channels": 16, "blocks": 2, "scale": 4}}, "an x4 model"),
])
def test_checkpoint_refuses_mismatched_metadata(tmp_path, change, message):
    weights, meta = _saved(tmp_path)
    _edit(meta, **change)
    with pytest.raises(CheckpointError, match=message):
        load_upsampler(weights)


def test_checkpoint_refuses_tampered_weights_and_missing_sidecar(tmp_path):
    weights, meta = _saved(tmp_path)
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="do not match their metadata"):
        load_upsampler(weights)
    meta.unlink()
    with pytest.raises(CheckpointError, match="metadata file missing"):
        load_upsampler(weights)
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_upsampler(tmp_path / "x")


def test_unknown_model_name_lists_shipped():
    with pytest.raises(CheckpointError, match="not a shipped model"):
        load_upsampler("no-such-model")


def test_reparameterised_block_equals_its_collapsed_conv():
    from vsr_plugin.models.layers import RepConv3x3

    torch.manual_seed(3)
    for c_in, c_out in ((6, 16), (16, 16)):
        block = RepConv3x3(c_in, c_out)
        for p in block.parameters():  # every branch non-zero, biases included
            torch.nn.init.normal_(p, std=0.2)
        x = torch.randn(2, c_in, 9, 7)  # odd sizes: the border handling matters
        fused = block.fuse()
        assert fused.kernel_size == (3, 3) and fused.padding == (1, 1)
        torch.testing.assert_close(fused(x), block(x), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(block.conv3(x), block(x))  # the other branches do contribute


def test_reparameterised_upsampler_collapses_to_the_plain_network():
    torch.manual_seed(4)
    config = UpsamplerConfig(channels=16, blocks=2)
    rep = Upsampler(config, reparam=True)
    for p in rep.parameters():
        torch.nn.init.normal_(p, std=0.1)
    plain = rep.collapsed()
    assert not plain.reparam and plain.config == config
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in Upsampler(config).parameters())
    packed = kernels.pack(*random_planes(1, 15, 11, 8), bits=8)
    torch.testing.assert_close(plain(packed), rep(packed), atol=1e-5, rtol=1e-5)
    # and back: a trained plain network becomes an equal training form
    again = Upsampler.reparameterised(plain)
    assert again.reparam
    torch.testing.assert_close(again(packed), plain(packed), atol=1e-5, rtol=1e-5)


def test_deepened_network_equals_the_shallow_one_and_then_learns_more():
    shallow = randomised(UpsamplerConfig(channels=16, blocks=2), seed=3)
    torch.nn.init.normal_(shallow.body[2].bias, std=0.1)  # biases too: negative pre-activations exist
    deep = Upsampler.deepened(shallow, 5)
    assert deep.config == UpsamplerConfig(channels=16, blocks=5)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in deep.body) == 6
    packed = kernels.pack(*random_planes(2, 19, 14, 9), bits=8)
    with torch.no_grad():
        assert torch.equal(deep.eval()(packed), shallow(packed))
    # the added blocks are ordinary convolutions: one gradient step changes the function
    deep.train()
    opt = torch.optim.SGD([p for m in list(deep.body)[6:] for p in m.parameters()], lr=0.1)
    deep(packed).square().mean().backward()
    opt.step()
    with torch.no_grad():
        assert not torch.equal(deep(packed), shallow(packed))
    with pytest.raises(ValueError, match="cannot deepen 5 blocks to 3"):
        Upsampler.deepened(deep, 3)
    with pytest.raises(ValueError, match="plain network without attention"):
        Upsampler.deepened(randomised(UpsamplerConfig(channels=16, blocks=2, attention=True)), 4)


def test_grown_downsampler_equals_the_small_one_and_its_new_channels_learn():
    torch.manual_seed(5)
    small = Downsampler(DownsamplerConfig(channels=8, blocks=1))
    for p in small.parameters():  # a trained-looking network: non-zero tail, biases of both signs
        torch.nn.init.normal_(p, std=0.2)
    big = Downsampler.grown(small, DownsamplerConfig(channels=12, blocks=3), generator=torch.Generator().manual_seed(0))
    assert big.config == DownsamplerConfig(channels=12, blocks=3)
    packed = kernels.pack(*random_planes(4, 21, 34, 8), bits=8, block=4)
    with torch.no_grad():
        torch.testing.assert_close(big(packed), small(packed), rtol=1e-6, atol=1e-6)
    # the new channels are live: they carry activations, and their output weights get gradient
    feats = big.body[:2](packed)
    assert feats[:, 8:].abs().sum() > 0
    big(packed).square().mean().backward()
    assert big.tail.weight.grad[:, 8:].abs().sum() > 0
    assert big.body[2].weight.grad[:8, 8:].abs().sum() > 0
    with pytest.raises(ValueError, match="may only increase"):
        Downsampler.grown(big, DownsamplerConfig(channels=8, blocks=3))
    assert DOWN_PRESETS["large"].channels > DOWN_PRESETS["default"].channels


def test_blend_interpolates_two_networks_and_keeps_the_parents_exactly(tmp_path):
    from vsr_plugin.export import main as export_main
    from vsr_plugin.models import blend_weights, read_info

    config = UpsamplerConfig(channels=8, blocks=2)
    a, b = randomised(config, seed=1), randomised(config, seed=2)
    save_upsampler(tmp_path / "a", a)
    save_upsampler(tmp_path / "b", b)
    for alpha, expect in ((0.0, a), (1.0, b)):
        blend_weights(tmp_path / "a", tmp_path / "b", alpha, tmp_path / "end")
        got, _ = load_upsampler(tmp_path / "end")
        for k, t in expect.state_dict().items():
            assert torch.equal(got.state_dict()[k], t), k
    assert export_main(["blend", str(tmp_path / "a"), str(tmp_path / "b"), "--alpha", "0.25",
                        "-o", str(tmp_path / "q")]) == 0
    got, info = load_upsampler(tmp_path / "q")
    sa, sb = a.state_dict(), b.state_dict()
    for k, t in got.state_dict().items():
        torch.testing.assert_close(t, 0.75 * sa[k] + 0.25 * sb[k], rtol=0, atol=1e-7)
    blend = read_info(tmp_path / "q").training["blend"]
    assert blend["alpha"] == 0.25 and blend["a"]["name"] == "a" and blend["b"]["name"] == "b"
    assert blend["b"]["sha256"] == read_info(tmp_path / "b").sha256
    assert info.config == a.config.to_dict()


def test_blend_refuses_other_architectures_and_weights_out_of_range(tmp_path, capsys):
    from vsr_plugin.export import main as export_main
    from vsr_plugin.models import blend_weights

    save_upsampler(tmp_path / "a", randomised(UpsamplerConfig(channels=8, blocks=2)))
    save_upsampler(tmp_path / "c", randomised(UpsamplerConfig(channels=8, blocks=3)))
    with pytest.raises(CheckpointError, match="different architectures"):
        blend_weights(tmp_path / "a", tmp_path / "c", 0.5, tmp_path / "x")
    # a file whose tensors do not fit the config its sidecar claims: one clear error, not a KeyError
    meta = tmp_path / "c.json"
    meta.write_text(meta.read_text().replace('"blocks": 3', '"blocks": 2'))
    with pytest.raises(CheckpointError, match="do not fit the architecture"):
        blend_weights(tmp_path / "a", tmp_path / "c", 0.5, tmp_path / "x")
    assert export_main(["blend", str(tmp_path / "a"), str(tmp_path / "a"), "--alpha", "1.5",
                        "-o", str(tmp_path / "x")]) == 2
    assert "outside [0, 1]" in capsys.readouterr().err
    assert export_main(["blend", str(tmp_path / "a"), "x2-codec-default-down", "--alpha", "0.5",
                        "-o", str(tmp_path / "x")]) == 2
    assert "expected 'upsampler'" in capsys.readouterr().err
    assert not list(tmp_path.glob("x.*"))


def test_pair_names_follow_the_naming_or_the_named_pairs():
    from vsr_plugin.models import NAMED_PAIRS, pair_names, resolve_weights, shipped_models

    assert pair_names("codec-default") == ("x2-codec-default-down", "x2-codec-default-up")
    assert pair_names("codec-perceptual") == ("x2-codec-aware-v2-down", "x2-perceptual")
    assert pair_names("codec-perceptual-v2") == ("x2-codec-aware-v2-down", "x2-perceptual-v2")
    for pair in NAMED_PAIRS:  # every named pair is shipped, each half of its own kind
        down, up = pair_names(pair)
        assert down in shipped_models("downsampler") and up in shipped_models("upsampler")
        resolve_weights(down), resolve_weights(up)
