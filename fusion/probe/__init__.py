"""Downstream evaluation of representations, in the style of scikit-learn.

    from fusion.probe import FusionEmbedder, LinearProbe, embed_dataset

    fusion = FusionEmbedder.from_checkpoint("runs/pretrain/checkpoints/final.ckpt")
    train = embed_dataset(fusion, data.train, progress=True)
    test = embed_dataset(fusion, data.test)
    LinearProbe("classification").fit(train.x, train.y).score(test.x, test.y)

Embedders receive physical Samples and apply their own preprocessing, so a checkpoint, an ImageNet
model and a statistics baseline are compared on the same samples and split.
"""

from fusion.probe.embedders import Concatenated, Embedder, FusionEmbedder
from fusion.probe.embedding import Embeddings, embed_dataset
from fusion.probe.errors import (
    EmptyClassError,
    EmptySubsetError,
    LabelError,
    ProbeError,
    SubsetError,
)
from fusion.probe.evaluation import Cell, Matrix, evaluate, missing_matrix
from fusion.probe.finetune import FineTuneProbe
from fusion.probe.metrics import METRICS, TASKS, Task, score
from fusion.probe.probes import PROBES, ForestProbe, KNNProbe, LinearProbe, Probe, make_probe
from fusion.probe.subsets import NAMED_BANDS, Subset, band_subsets, parse_subset, sensor_subsets

__all__ = [
    "METRICS",
    "NAMED_BANDS",
    "PROBES",
    "TASKS",
    "Cell",
    "Concatenated",
    "Embedder",
    "Embeddings",
    "EmptyClassError",
    "EmptySubsetError",
    "FineTuneProbe",
    "ForestProbe",
    "FusionEmbedder",
    "KNNProbe",
    "LabelError",
    "LinearProbe",
    "Matrix",
    "Probe",
    "ProbeError",
    "Subset",
    "SubsetError",
    "Task",
    "band_subsets",
    "embed_dataset",
    "evaluate",
    "make_probe",
    "missing_matrix",
    "parse_subset",
    "score",
    "sensor_subsets",
]
