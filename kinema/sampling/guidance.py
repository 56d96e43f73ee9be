"""Wrappers that turn a network into the velocity function a solver integrates.

- parameterisation: the network may predict v = eps - x_0 or x_0; solvers always get v.
- classifier-free guidance: v = v_uncond + s (v_cond - v_uncond), both branches in one batch;
  the unconditional branch is the negative prompt (empty by default).
- known frames (the one conditioning mechanism): latent frames given by the user are put back at
  their positions before every evaluation and carry t = 0 (or a small t with the same amount of
  fixed noise mixed in: noise augmentation, which loosens their hold); only the other frames are
  denoised.
- micro-conditioning: the frame rate goes to both CFG branches alike; the motion strength to the
  conditional one alone (the model learned it with the input dropped at times, so guidance then
  pushes towards the asked-for motion as well as towards the text).
- an image input (Wan I2V, kinema/pipeline/wan_i2v.py): CLIP tokens for the cross-attention and
  channels joined to the latents before every evaluation, the same for both CFG branches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kinema.sampling.solvers import Velocity

# net(x (B, C, F, H, W), t (B, F), context, mask) -> prediction
Network = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass
class TextCondition:
    states: torch.Tensor  # (B, L, D)
    mask: torch.Tensor  # (B, L) bool


@dataclass
class KnownFrames:
    """Clean latents (B, C, F, H, W) valid where frame_mask (F,) is True, shown to the network
    at flow time noise_level (0: exactly) with a fixed draw of noise."""

    latents: torch.Tensor
    frame_mask: torch.Tensor
    noise_level: float = 0.0
    noise: torch.Tensor | None = None  # same shape as latents; needed when noise_level > 0

    def __post_init__(self):
        if not 0.0 <= self.noise_level < 1.0:
            raise ValueError(f"noise level must be in [0, 1), got {self.noise_level}")
        if self.noise_level > 0 and self.noise is None:
            raise ValueError("a noise level above 0 needs the noise to mix in")

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        return self.frame_mask.to(x.device)[None, None, :, None, None]

    def shown(self) -> torch.Tensor:
        """The known latents as the network sees them."""
        if self.noise_level == 0:
            return self.latents
        s = self.noise_level
        return (1 - s) * self.latents + s * self.noise.to(self.latents.dtype)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self._mask(x), self.shown().to(x.dtype), x)

    def restore(self, x: torch.Tensor) -> torch.Tensor:
        """Put the clean known latents back (after sampling, before decoding)."""
        return torch.where(self._mask(x), self.latents.to(x.dtype), x)


@dataclass
class ImageCondition:
    """Wan I2V's image input for one clip: tokens (N, Li, D), the CLIP tokens of its N images
    (2: first and last frame), and channels (1, Cc, F, H, W), joined after the latents'
    channels."""

    tokens: torch.Tensor
    channels: torch.Tensor


def velocity_from_prediction(
    prediction: str, out: torch.Tensor, x: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """v from the network output. t (B, F) broadcast over (C, H, W)."""
    if prediction == "v":
        return out
    tt = t[:, None, :, None, None].to(x.dtype).clamp(min=1e-3)
    return (x - out) / tt  # x_t = x_0 + t v  =>  v = (x_t - x_0) / t


def _pad_context(a: TextCondition, b: TextCondition) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack two conditions of different token lengths into one batch."""
    length = max(a.states.shape[1], b.states.shape[1])

    def pad(c: TextCondition):
        extra = length - c.states.shape[1]
        states = torch.nn.functional.pad(c.states, (0, 0, 0, extra))
        mask = torch.nn.functional.pad(c.mask, (0, extra), value=False)
        return states, mask

    (sa, ma), (sb, mb) = pad(a), pad(b)
    return torch.cat([sa, sb]), torch.cat([ma, mb])


def guided_velocity(
    net: Network,
    prediction: str,
    cond: TextCondition,
    uncond: TextCondition | None,
    guidance: float,
    known: KnownFrames | None = None,
    motion: float | None = None,
    fps: float | None = None,
    step_cache=None,
    image: ImageCondition | None = None,
) -> Velocity:
    """The velocity function for a solver. With guidance 1 or no uncond, one branch only.
    A network with prepare_context (kinema's DiT) embeds the text (and image) once here, not
    every step; step_cache (kinema.sampling.step_cache.StepCache) goes to every network call,
    and with its guidance reuse some evaluations run the conditional branch alone."""
    use_cfg = uncond is not None and guidance != 1.0
    if use_cfg:
        context, mask = _pad_context(cond, uncond)
    else:
        context, mask = cond.states, cond.mask
    # the conditional branch alone, for evaluations that reuse the guidance (step cache)
    reuse_guidance = use_cfg and step_cache is not None and step_cache.reuses_guidance
    cond_context, cond_mask = cond.states, cond.mask
    # the image's tokens once per batch entry: (B N, Li, D), each clip's N images together
    image_context = None if image is None else image.tokens.repeat(context.shape[0], 1, 1)
    cond_image = None if image is None else image.tokens.repeat(cond.states.shape[0], 1, 1)
    prepare = getattr(net, "prepare_context", None)
    if prepare is not None:
        given = () if image_context is None else (image_context,)
        context, mask, image_context = prepare(context, mask, *given), None, None
        if reuse_guidance:
            given = () if cond_image is None else (cond_image,)
            cond_context = prepare(cond_context, cond_mask, *given)
            cond_mask = cond_image = None

    def net_v(x: torch.Tensor, t: torch.Tensor, cond_only: bool = False) -> torch.Tensor:
        extra = {k: torch.full((x.shape[0],), float(v))
                 for k, v in (("motion", motion), ("fps", fps)) if v is not None}  # fmt: skip
        if motion is not None and use_cfg and not cond_only:
            # the unconditional branch goes without the motion strength too (as trained, with
            # it dropped), so guidance pushes towards the asked-for motion as well as the text
            extra["motion"][x.shape[0] // 2 :] = float("nan")
        if step_cache is not None:
            extra["step_cache"] = step_cache
        ctx, msk, img = (cond_context, cond_mask, cond_image) if cond_only else (
            context, mask, image_context)  # fmt: skip
        if img is not None:
            extra["image_context"] = img
        inputs = x
        if image is not None:
            channels = image.channels.to(x.device, x.dtype).expand(x.shape[0], -1, -1, -1, -1)
            inputs = torch.cat([x, channels], dim=1)
        return velocity_from_prediction(prediction, net(inputs, t, ctx, msk, **extra), x, t)

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        b, _, f = x.shape[:3]
        tt = torch.full((b, f), t, dtype=torch.float32, device=x.device)
        if known is not None:
            x = known.apply(x)
            tt = tt.masked_fill(known.frame_mask.to(x.device)[None, :], known.noise_level)
        if reuse_guidance and not step_cache.unconditional_due():
            v = step_cache.guided(net_v(x, tt, cond_only=True), None, guidance)
        elif use_cfg:
            v = net_v(torch.cat([x, x]), torch.cat([tt, tt]))
            v_cond, v_uncond = v.chunk(2)
            if reuse_guidance:
                v = step_cache.guided(v_cond, v_uncond, guidance)
            else:
                v = v_uncond + guidance * (v_cond - v_uncond)
        else:
            v = net_v(x, tt)
        if known is not None:  # known frames do not move
            v = v.masked_fill(known.frame_mask.to(x.device)[None, None, :, None, None], 0.0)
        return v

    return velocity
