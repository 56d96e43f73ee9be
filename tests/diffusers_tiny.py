"""Tiny random diffusers video pipelines, built offline (nothing is downloaded), with the
component sizes of diffusers' own fast tests (tests/pipelines/{wan,ltx,cogvideo,hunyuan_video,
stable_video_diffusion}); the text encoders are tiny T5/umT5 (Llama and CLIP for HunyuanVideo)
models with a word-level tokenizer instead of the hub's tiny tokenizers."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

WORDS = [
    "a",
    "red",
    "circle",
    "moving",
    "left",
    "on",
    "black",
    "background",
    "blue",
    "square",
    "right",
    "the",
    "green",
    "up",
    "down",
    "two",
    "small",
    "large",
    "triangle",
    "yellow",
    "navy",
]


def tokenizer(words: list[str] = WORDS) -> PreTrainedTokenizerFast:
    """Word-level over `words`, appends </s> and pads with <pad> (id 0), like T5's."""
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def t5(umt5: bool = False):
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    config = dict(vocab_size=32, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                  relative_attention_num_buckets=8)  # fmt: skip
    if umt5:
        return UMT5EncoderModel(UMT5Config(**config, feed_forward_proj="gated-gelu")).eval()
    return T5EncoderModel(T5Config(**config)).eval()


def wan():
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])  # fmt: skip
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
        out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    )  # fmt: skip
    return WanPipeline(tokenizer=tokenizer(), text_encoder=t5(umt5=True), vae=vae,
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                       transformer=transformer)  # fmt: skip


def ltx():
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4,
        attention_head_dim=8, cross_attention_dim=32, num_layers=1, caption_channels=32,
    )  # fmt: skip
    torch.manual_seed(0)
    scaling = (True, True, False, False)  # 4x in space and time
    vae = AutoencoderKLLTXVideo(
        latent_channels=8, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        spatio_temporal_scaling=scaling, decoder_spatio_temporal_scaling=scaling,
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
        patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False,
    )  # fmt: skip
    return LTXPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=t5(),
                       tokenizer=tokenizer(), transformer=transformer)  # fmt: skip


def cogvideox():
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
        DDIMScheduler,
    )

    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4, attention_head_dim=8, in_channels=4, out_channels=4,
        time_embed_dim=2, text_embed_dim=32, num_layers=1, sample_width=2, sample_height=2,
        sample_frames=9, patch_size=2, temporal_compression_ratio=4, max_text_seq_length=16,
    )  # fmt: skip
    torch.manual_seed(0)
    blocks = 4
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * blocks,
        up_block_types=("CogVideoXUpBlock3D",) * blocks, block_out_channels=(8,) * blocks,
        latent_channels=4, layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4,
    )  # fmt: skip
    return CogVideoXPipeline(tokenizer=tokenizer(), text_encoder=t5(), vae=vae,
                             transformer=transformer, scheduler=DDIMScheduler())  # fmt: skip


def svd():
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    try:
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import CLIPImageProcessor as ImageProcessor

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=8,
        out_channels=4, down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32, num_attention_heads=8, projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
    )  # fmt: skip
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        interpolation_type="linear", num_train_timesteps=1000, prediction_type="v_prediction",
        sigma_max=700.0, sigma_min=0.002, steps_offset=1, timestep_spacing="leading",
        timestep_type="continuous", trained_betas=None, use_karras_sigmas=True,
    )  # fmt: skip
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 64], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"], latent_channels=4,
    )  # fmt: skip
    torch.manual_seed(0)
    # the pipeline resizes its image to 224x224 for CLIP: 7 x 7 patches of 32 pixels
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(hidden_size=32, projection_dim=32, num_hidden_layers=2,
                         num_attention_heads=4, image_size=224, intermediate_size=37, patch_size=32)
    ).eval()  # fmt: skip
    return StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=ImageProcessor(crop_size=224, size=224),
    )


def hunyuan():
    """HunyuanVideo's two text encoders (a Llama and a CLIP text model) with word-level
    tokenizers; sizes from diffusers' fast test."""
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    torch.manual_seed(0)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, patch_size=1, patch_size_t=1,
        guidance_embeds=True, text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4),
    )  # fmt: skip
    torch.manual_seed(0)
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
        layers_per_block=1, act_fn="silu", norm_num_groups=4, scaling_factor=0.476986,
        spatial_compression_ratio=8, temporal_compression_ratio=4, mid_block_add_attention=True,
    )  # fmt: skip
    common = dict(bos_token_id=0, eos_token_id=1, pad_token_id=0, intermediate_size=37,
                  num_attention_heads=4, num_hidden_layers=2, vocab_size=64, hidden_act="gelu")  # fmt: skip
    torch.manual_seed(0)
    llama = LlamaModel(LlamaConfig(hidden_size=16, **common)).eval()
    torch.manual_seed(0)
    clip = CLIPTextModel(CLIPTextConfig(hidden_size=8, projection_dim=32, **common)).eval()
    return HunyuanVideoPipeline(
        text_encoder=llama, tokenizer=tokenizer(), text_encoder_2=clip, tokenizer_2=tokenizer(),
        transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    )  # fmt: skip


BUILDERS = {"wan": wan, "ltx": ltx, "cogvideox": cogvideox, "svd": svd, "hunyuan": hunyuan}


def save(kind: str, folder) -> None:
    """A tiny pipeline of this kind, written with save_pretrained (diffusers' folder layout)."""
    BUILDERS[kind]().save_pretrained(folder)
