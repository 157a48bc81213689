"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, and federated splits."""
from __future__ import annotations

import gzip
import pathlib
from typing import List, Tuple

import numpy as np
import torch

__all__ = ["load_fashion_mnist", "split_iid", "split_by_class", "split_dirichlet", "split_straggler_skew",
           "FASHION_MNIST_DIR"]

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


def split_straggler_skew(labels: np.ndarray, clients: int, per_client: int, stragglers, rare_classes: int = 3,
                         straggler_rare_share: float = 0.8, fast_rare_share: float = 0.05,
                         seed: int = 0) -> Tuple[List[np.ndarray], List[int]]:
    """Non-IID split where the stragglers hold data the others lack (ELFISH's premise: slow devices
    see classes that fast ones rarely do).

    ``rare_classes`` classes are drawn at random; every client in ``stragglers`` gets
    ``straggler_rare_share`` of its ``per_client`` samples from them (spread evenly over them), the
    other clients ``fast_rare_share``; the rest comes evenly from the common classes. Samples are
    disjoint. Returns (index arrays per client, the rare classes)."""
    if not 0 <= straggler_rare_share <= 1 or not 0 <= fast_rare_share <= 1:
        raise ValueError("rare shares must be in [0, 1]")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    n_classes = int(labels.max()) + 1
    if not 0 < rare_classes < n_classes:
        raise ValueError(f"rare_classes must be in [1, {n_classes - 1}], got {rare_classes}")
    rare = sorted(rng.choice(n_classes, rare_classes, replace=False).tolist())
    common = [c for c in range(n_classes) if c not in rare]
    pools = {c: list(rng.permutation(np.flatnonzero(labels == c))) for c in range(n_classes)}
    stragglers = set(int(s) for s in stragglers)

    def deal(classes, count):
        take = []
        for j, c in enumerate(classes):
            k = count // len(classes) + (1 if j < count % len(classes) else 0)
            if len(pools[c]) < k:
                raise ValueError(f"not enough samples of class {c} for the requested split")
            take += [pools[c].pop() for _ in range(k)]
        return take

    out = []
    for i in range(clients):
        share = straggler_rare_share if i in stragglers else fast_rare_share
        n_rare = int(round(share * per_client))
        # A per-client rotation of the class order spreads the +1 remainders over the classes.
        out.append(np.array(deal(rare[i % len(rare):] + rare[:i % len(rare)], n_rare)
                            + deal(common[i % len(common):] + common[:i % len(common)], per_client - n_rare)))
    return out, rare
