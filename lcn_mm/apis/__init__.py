"""OpenMMLab-facing APIs: switch a config's norms, load BN/GN checkpoints, tiled inference."""
from .checkpoint import check_checkpoint, convert_state_dict
from .norm_swap import CONV_NORM_TYPES, norm_layer_summary, swap_norms
from .tiled import receptive_context, tiled_inference

__all__ = ['CONV_NORM_TYPES', 'check_checkpoint', 'convert_state_dict', 'norm_layer_summary',
           'receptive_context', 'swap_norms', 'tiled_inference']
