import pytest
import torch

from vsr_plugin.models import PRESETS, Upsampler, save_upsampler


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A small random upsampler (fast to run) saved as a weights file; its path as a string."""
    torch.manual_seed(0)
    net = Upsampler(PRESETS["fast"].__class__(channels=8, blocks=1))
    torch.nn.init.normal_(net.tail.weight, std=0.01)
    path = tmp_path_factory.mktemp("weights") / "tiny"
    save_upsampler(path, net)
    return str(path)


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    """A small random downsampler + upsampler pair in one folder: (down path, up path, folder)."""
    from vsr_plugin.models import Downsampler, DownsamplerConfig, save_downsampler

    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("pair")
    down = Downsampler(DownsamplerConfig(channels=8, blocks=1))
    torch.nn.init.normal_(down.tail.weight, std=0.01)
    up = Upsampler(PRESETS["fast"].__class__(channels=8, blocks=1))
    torch.nn.init.normal_(up.tail.weight, std=0.01)
    save_downsampler(folder / "pair-down", down)
    save_upsampler(folder / "pair-up", up)
    return str(folder / "pair-down"), str(folder / "pair-up"), str(folder)
