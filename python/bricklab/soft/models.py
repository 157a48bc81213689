"""Small reference models for soft-training (Fashion-MNIST sized, 1x28x28 inputs, 10 classes)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["LeNet", "MLP", "TinyResNet", "ConcatNet"]


class LeNet(nn.Module):
    """LeNet-like CNN: two conv + batch norm + pool blocks, two fully connected layers."""

    def __init__(self, width: int = 32, hidden: int = 256, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 5, padding=2)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 5)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(2 * width * 5 * 5, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = torch.flatten(x, 1)
        return self.fc2(torch.relu(self.fc1(x)))


class MLP(nn.Module):
    """Two hidden layers of ``hidden`` units."""

    def __init__(self, hidden: int = 512, classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class TinyResNet(nn.Module):
    """A stem and two residual blocks (identity shortcut and a 1x1 projection shortcut)."""

    def __init__(self, width: int = 16, classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(width)
        self.a1 = nn.Conv2d(width, width, 3, padding=1)
        self.abn1 = nn.BatchNorm2d(width)
        self.a2 = nn.Conv2d(width, width, 3, padding=1)
        self.abn2 = nn.BatchNorm2d(width)
        self.b1 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.bbn1 = nn.BatchNorm2d(2 * width)
        self.b2 = nn.Conv2d(2 * width, 2 * width, 3, padding=1)
        self.bbn2 = nn.BatchNorm2d(2 * width)
        self.proj = nn.Conv2d(width, 2 * width, 1, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        y = torch.relu(self.abn1(self.a1(x)))
        x = torch.relu(x + self.abn2(self.a2(y)))
        y = torch.relu(self.bbn1(self.b1(x)))
        x = torch.relu(self.proj(x) + self.bbn2(self.b2(y)))
        return self.fc(torch.flatten(self.pool(x), 1))


class ConcatNet(nn.Module):
    """Two branches concatenated along channels, then flattened into a Linear (Inception-like)."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.left = nn.Conv2d(1, 6, 3, padding=1)
        self.right = nn.Conv2d(1, 10, 5, padding=2)
        self.bn = nn.BatchNorm2d(16)
        self.mix = nn.Conv2d(16, 12, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc1 = nn.Linear(12 * 16 + 16 * 16, 32)
        self.fc2 = nn.Linear(32, classes)

    def forward(self, x):
        c = self.bn(torch.cat([torch.relu(self.left(x)), torch.relu(self.right(x))], dim=1))
        m = self.pool(torch.relu(self.mix(c)))
        skip = self.pool(c)
        flat = torch.cat([torch.flatten(m, 1), torch.flatten(skip, 1)], 1)
        return self.fc2(torch.relu(self.fc1(flat)))
