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
