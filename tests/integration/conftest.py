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


def save_tiny_pair(folder):
    """Save a small random downsampler + upsampler pair as ``folder/pair-down`` and ``folder/pair-up``;
    returns the downsampler module (for tests that change and save it again)."""
    from vsr_plugin.models import Downsampler, DownsamplerConfig, save_downsampler

    torch.manual_seed(1)
    down = Downsampler(DownsamplerConfig(channels=8, blocks=1))
    torch.nn.init.normal_(down.tail.weight, std=0.01)
    up = Upsampler(PRESETS["fast"].__class__(channels=8, blocks=1))
    torch.nn.init.normal_(up.tail.weight, std=0.01)
    save_downsampler(folder / "pair-down", down)
    save_upsampler(folder / "pair-up", up)
    return down


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory):
    """A small random downsampler + upsampler pair in one folder: (down path, up path, folder)."""
    folder = tmp_path_factory.mktemp("pair")
    save_tiny_pair(folder)
    return str(folder / "pair-down"), str(folder / "pair-up"), str(folder)
