"""The network, shared by ``train.py`` and the solver so both build the same layers."""

from __future__ import annotations

from torch import Tensor, nn

SIDE = 8  # scikit-learn's digits are 8x8, each pixel 0..16
CLASSES = 10


class LeNet(nn.Module):
    """Two conv/ReLU/max-pool stages and two dense layers: LeCun's layout, sized for 8x8 input."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16 x 4 x 4
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 2 x 2
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, CLASSES))

    def forward(self, x: Tensor) -> Tensor:
        """``x``: (N, 1, 8, 8) ink intensities in [0, 1]; returns (N, 10) logits."""
        return self.classifier(self.features(x))
