"""The network and the decoding of its output into boxes, shared by training, evaluation and the solver.

A CenterNet-style detector ("Objects as Points", Zhou et al. 2019), scaled down: a fully
convolutional trunk to stride 4, then per output cell a heatmap per class (a digit's centre
peaks there), the box's size (log of pixels / 16) and the centre's offset within the cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

STRIDE = 4
CLASSES = 10
SIZE_UNIT = 16.0  # sizes are predicted as log(pixels / SIZE_UNIT)


def _block(cin: int, cout: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DigitDetector(nn.Module):
    """Grey image (N, 1, H, W) in [0, 1], H and W multiples of 4 -> (N, 14, H/4, W/4): 10 class
    heatmap logits, 2 log-sizes (w, h), 2 centre offsets (x, y) in cells."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            _block(1, 16, stride=2),             # 1/2
            _block(16, 32),
            _block(32, 32, stride=2),            # 1/4
            _block(32, 48),
            _block(48, 48, dilation=2),          # the dilations widen the view to a whole digit
            _block(48, 48, dilation=4),
        )
        self.heatmap = nn.Conv2d(48, CLASSES, 1)
        self.box = nn.Conv2d(48, 4, 1)
        nn.init.constant_(self.heatmap.bias, -2.19)  # a 10 % prior, as CenterNet starts

    def forward(self, x: Tensor) -> Tensor:
        features = self.trunk(x)
        return torch.cat([self.heatmap(features), self.box(features)], dim=1)


@dataclass(frozen=True)
class Detection:
    label: int
    score: float
    x: float
    y: float
    w: float
    h: float


def decode(output: Tensor, *, threshold: float, top_k: int = 50,
           sizes: list[tuple[int, int]] | None = None) -> list[list[Detection]]:
    """Boxes from a batch of outputs: local maxima (3x3) of the best class per cell above
    ``threshold``, at most ``top_k`` per image, clipped to the image (``sizes``: (width, height)
    of each, default the padded input)."""
    n, _, gh, gw = output.shape
    heat = torch.sigmoid(output[:, :CLASSES])
    best, label = heat.max(dim=1)                                   # one class per cell: no stacked duplicates
    peaks = best == F.max_pool2d(best.unsqueeze(1), 3, stride=1, padding=1).squeeze(1)
    best = torch.where(peaks, best, torch.zeros_like(best))
    scores, index = best.flatten(1).topk(min(top_k, gh * gw), dim=1)
    log_wh, offset = output[:, CLASSES:CLASSES + 2], output[:, CLASSES + 2:CLASSES + 4]
    result: list[list[Detection]] = []
    for i in range(n):
        width, height = sizes[i] if sizes else (gw * STRIDE, gh * STRIDE)
        found: list[Detection] = []
        for score, k in zip(scores[i].tolist(), index[i].tolist(), strict=True):
            if score < threshold:
                break
            cy, cx = divmod(k, gw)
            w, h = (torch.exp(log_wh[i, :, cy, cx]) * SIZE_UNIT).tolist()
            ox, oy = offset[i, :, cy, cx].tolist()
            x_c, y_c = (cx + ox) * STRIDE, (cy + oy) * STRIDE
            x0, y0 = max(0.0, x_c - w / 2), max(0.0, y_c - h / 2)
            x1, y1 = min(float(width), x_c + w / 2), min(float(height), y_c + h / 2)
            if x1 - x0 >= 1 and y1 - y0 >= 1:
                found.append(Detection(int(label[i, cy, cx]), float(score), x0, y0, x1 - x0, y1 - y0))
        result.append(found)
    return result


def pad_to_stride(grey: Tensor) -> Tensor:
    """(N, 1, H, W) padded at the bottom and right (edge pixels repeated) to multiples of ``STRIDE``."""
    h, w = grey.shape[-2:]
    ph, pw = -h % STRIDE, -w % STRIDE
    return F.pad(grey, (0, pw, 0, ph), mode="replicate") if ph or pw else grey
