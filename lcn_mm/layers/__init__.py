from .lcn import LCN, LayerNormCHW, PositionalNorm

__all__ = ['LCN', 'PositionalNorm', 'LayerNormCHW']
