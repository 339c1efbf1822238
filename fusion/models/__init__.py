"""Models: band embeddings from metadata, per-stream stems, fusion over present streams.

``FusionEncoder`` is the teacher encoder; ``early_fusion_baseline`` the CSF-style comparison point;
``count_macs`` measures either for the cost benchmark. ``PatchGatedViT`` is the single-tower
mobile ViT whose MLPs route each patch token to one small expert or skip it.
"""

from fusion.models.band_embedding import (
    NUM_BAND_FEATURES,
    BandEmbedding,
    band_features,
    quantity_bucket,
)
from fusion.models.cost import count_macs
from fusion.models.early_fusion import EarlyFusionEncoder, early_fusion_baseline
from fusion.models.encoder import FusionEncoder
from fusion.models.errors import (
    ModelInputError,
    NoDataError,
    StreamMismatchError,
    UnknownStreamError,
)
from fusion.models.fusion import TokenFusion
from fusion.models.gated import GatedClassifier, PackedTokens, PatchGatedViT, average_macs
from fusion.models.heads import projection_head
from fusion.models.routing import RoutedMLP, switch_balance_loss
from fusion.models.stems import BandSetStem, stage_strides
from fusion.models.streams import stream_from_dict, stream_to_dict

__all__ = [
    "NUM_BAND_FEATURES",
    "BandEmbedding",
    "BandSetStem",
    "EarlyFusionEncoder",
    "FusionEncoder",
    "GatedClassifier",
    "ModelInputError",
    "NoDataError",
    "PackedTokens",
    "PatchGatedViT",
    "RoutedMLP",
    "StreamMismatchError",
    "TokenFusion",
    "UnknownStreamError",
    "average_macs",
    "band_features",
    "count_macs",
    "early_fusion_baseline",
    "projection_head",
    "quantity_bucket",
    "stage_strides",
    "stream_from_dict",
    "stream_to_dict",
    "switch_balance_loss",
]
