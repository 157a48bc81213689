"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, and federated splits."""
from __future__ import annotations

import gzip
import pathlib
from typing import List, Tuple

import numpy as np
import torch

__all__ = ["load_fashion_mnist", "split_iid", "split_by_class", "split_dirichlet", "FASHION_MNIST_DIR"]

FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


def _read_idx(path: pathlib.Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion_mnist(root=FASHION_MNIST_DIR) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): float images in [0, 1] normalised, shape (N, 1, 28, 28)."""
    root = pathlib.Path(root)
    if not (root / "train-images-idx3-ubyte.gz").exists():
        raise FileNotFoundError(f"Fashion-MNIST not found in {root} (apt-get install dataset-fashion-mnist)")

    def images(name):
        x = torch.from_numpy(_read_idx(root / name).astype(np.float32) / 255.0).unsqueeze(1)
        return (x - 0.2860) / 0.3530

    def labels(name):
        return torch.from_numpy(_read_idx(root / name).astype(np.int64))

    return (images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz"),
            images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"))


def split_iid(n: int, clients: int, per_client: int, seed: int = 0) -> List[np.ndarray]:
    """Disjoint random index sets of ``per_client`` samples each."""
    perm = np.random.default_rng(seed).permutation(n)
    if clients * per_client > n:
        raise ValueError(f"{clients} x {per_client} samples requested from {n}")
    return [perm[i * per_client:(i + 1) * per_client] for i in range(clients)]


def split_by_class(labels: np.ndarray, clients: int, per_client: int, classes_per_client: int = 2,
                   seed: int = 0) -> List[np.ndarray]:
    """Non-IID: each client gets ``per_client`` samples from ``classes_per_client`` classes
    (classes dealt round-robin so that every class is held by some clients)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    n_classes = int(labels.max()) + 1
    pools = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in range(n_classes)}
    out = []
    for i in range(clients):
        cls = [(i * classes_per_client + j) % n_classes for j in range(classes_per_client)]
        take = []
        for j, c in enumerate(cls):
            k = per_client // classes_per_client + (1 if j < per_client % classes_per_client else 0)
            take += [pools[c].pop() for _ in range(k)]
        out.append(np.array(take))
    return out


def split_dirichlet(labels: np.ndarray, clients: int, per_client: int, alpha: float = 0.5,
                    seed: int = 0) -> List[np.ndarray]:
    """Non-IID label skew: client i's class mix is drawn from Dirichlet(alpha), then ``per_client``
    samples are taken without replacement following it (a class that runs out is skipped)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    n_classes = int(labels.max()) + 1
    pools = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in range(n_classes)}
    out = []
    for _ in range(clients):
        q = rng.dirichlet(alpha * np.ones(n_classes))
        take = []
        while len(take) < per_client:
            c = int(rng.choice(n_classes, p=q))
            if pools[c]:
                take.append(pools[c].pop())
            else:
                q[c] = 0
                if q.sum() == 0:
                    raise ValueError("not enough samples for the requested split")
                q = q / q.sum()
        out.append(np.array(take))
    return out
