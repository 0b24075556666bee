"""The course's model code. ``blocks`` holds the transformer building blocks every model reuses."""

from vlp_course.models.blocks import (  # noqa: F401
    Attention,
    Encoder,
    EncoderOutput,
    MultiHeadAttention,
    Pooler,
    TextEmbeddings,
    TextTransformer,
    TransformerConfig,
    TransformerLayer,
    additive_attention_mask,
    init_bert_weights,
    load_bert_weights,
)
