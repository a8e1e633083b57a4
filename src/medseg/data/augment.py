"""Training augmentation of whole batches, on the device the batch lives on.

The data loader serves prepared, resized cases (:func:`~medseg.data.transforms.build_transforms`); the training
module augments each batch after it has been moved to the model's device (see
:meth:`medseg.engine.module.SegmentationTask.on_after_batch_transfer`). Every random number comes from a CPU
``torch.Generator`` (:func:`batch_generator`) seeded from the run's seed, the epoch and the batch index, so a
seed gives the same augmentations whatever the number of data-loader workers, and the CPU and a GPU draw the same
parameters (only the pixels of the Gaussian noise come from a generator on the batch's device).

Order and meaning, each applied to the images drawn with its probability from ``data.transforms``:

1. geometry, image and mask alike: horizontal flip, vertical flip, rotation by ``k`` x 90 degrees (exact index
   operations), then free rotation and zoom in one affine ``grid_sample`` (bilinear for the image, nearest for
   the mask, zero outside the image: 0 in the normalised space for the image, background for the mask);
2. intensity, image only, in the order light would meet them: brightness, contrast, gamma, blur, noise.

The intensity augmentations work on the normalised images but are defined so that they mean the same thing
whatever ``data.transforms.normalize`` is (every normalisation is an affine map per channel):

* brightness multiplies the raw intensities, so it scales each channel about the normalised value of a raw 0
  (:func:`black_level`: ``-mean/std`` after ``imagenet`` or ``zscore``, 0 otherwise);
* contrast stretches each channel about its mean in the image;
* gamma raises each channel, rescaled to ``[0, 1]`` by its minimum and maximum in the image, to the power
  ``gamma`` and maps it back, so the range is kept;
* Gaussian blur filters each channel (replicated border);
* Gaussian noise has a standard deviation that is a fraction of the channel's standard deviation in the image.

Nothing is clipped: a brightened ``unit`` image may exceed 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medseg.config import DataConfig
from medseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["AugmentDraws", "BatchAugment", "batch_generator", "black_level", "gaussian_blur"]

# Columns of the uniform draws, one row per image. Every augmentation always consumes its columns, so turning
# one augmentation on or off leaves the draws of the others unchanged.
_COLUMNS = (
    "hflip",
    "vflip",
    "rot90",
    "rot90_k",
    "rotate",
    "angle",
    "scale",
    "scale_value",
    "brightness",
    "brightness_value",
    "contrast",
    "contrast_value",
    "gamma",
    "gamma_value",
    "blur",
    "blur_value",
    "noise",
    "noise_value",
)


def batch_generator(seed: int, epoch: int, batch: int, rank: int = 0) -> torch.Generator:
    """The CPU generator of one training batch.

    Args:
        seed: the run's seed (``train.seed``).
        epoch: the epoch, from 0.
        batch: the batch index within the epoch.
        rank: the process rank in multi-device training (each device augments its own batch differently).

    Returns:
        A CPU ``torch.Generator`` whose state depends on all four numbers.
    """
    entropy = [seed % 2**64, epoch, batch, rank]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def black_level(data_cfg: DataConfig) -> tuple[float, ...]:
    """The normalised value of a raw intensity of 0, per channel.

    Args:
        data_cfg: the data section of the experiment.

    Returns:
        ``data.in_channels`` values: ``-mean/std`` after ``imagenet`` or ``zscore``, 0 for the other
        normalisations (``minmax`` maps each image's darkest pixel to 0).
    """
    cfg, channels = data_cfg.transforms, data_cfg.in_channels
    if cfg.normalize == "imagenet":
        return tuple(-mean / std for mean, std in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
    if cfg.normalize == "zscore" and cfg.mean is not None and cfg.std is not None:
        return tuple(-mean / std for mean, std in zip(cfg.mean, cfg.std, strict=True))
    return (0.0,) * channels


@dataclass(frozen=True, eq=False)
class AugmentDraws:
    """The random choices for one batch of ``B`` images, as CPU tensors of shape ``(B,)``.

    A boolean says whether the image gets the augmentation; the value next to it is its parameter.

    Attributes:
        hflip: flip left-right.
        vflip: flip upside-down.
        rot90_k: number of quarter turns, 0 (none) to 3.
        affine: rotate and/or zoom.
        angle: rotation angle in radians (0 when not rotated).
        scale: zoom factor (1 when not zoomed).
        brightness: change the brightness.
        brightness_value: factor on the raw intensities.
        contrast: change the contrast.
        contrast_value: factor about the channel mean.
        gamma: apply a gamma.
        gamma_value: the exponent.
        blur: blur.
        blur_value: the blur's sigma in pixels.
        noise: add noise.
        noise_value: the noise's standard deviation relative to the channel's.
        noise_seed: seed of the noise pixels' generator on the batch's device (a 0-d tensor).
    """

    hflip: torch.Tensor
    vflip: torch.Tensor
    rot90_k: torch.Tensor
    affine: torch.Tensor
    angle: torch.Tensor
    scale: torch.Tensor
    brightness: torch.Tensor
    brightness_value: torch.Tensor
    contrast: torch.Tensor
    contrast_value: torch.Tensor
    gamma: torch.Tensor
    gamma_value: torch.Tensor
    blur: torch.Tensor
    blur_value: torch.Tensor
    noise: torch.Tensor
    noise_value: torch.Tensor
    noise_seed: torch.Tensor


def _log_uniform(u: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    low, high = math.log(bounds[0]), math.log(bounds[1])
    return torch.exp(low + u * (high - low))


def _apply_to(x: torch.Tensor, chosen: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn`` applied to the images of ``x`` where ``chosen`` (CPU booleans) holds; the others stay as they are."""
    if not bool(chosen.any()):
        return x
    if bool(chosen.all()):
        return fn(x)
    index = chosen.nonzero().flatten().to(x.device)
    return x.index_copy(0, index, fn(x.index_select(0, index)))


def _affine(image: torch.Tensor, mask: torch.Tensor, draws: AugmentDraws) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate about the centre and zoom the chosen square images, both with one sampling grid."""
    chosen = draws.affine
    cos = (torch.cos(draws.angle) / draws.scale)[chosen].to(image.device, image.dtype).view(-1, 1, 1)
    sin = (torch.sin(draws.angle) / draws.scale)[chosen].to(image.device, image.dtype).view(-1, 1, 1)
    size = image.shape[-1]
    # pixel centres in grid_sample's [-1, 1] coordinates (align_corners=False); output -> input position
    centres = (torch.arange(size, device=image.device, dtype=image.dtype) * 2 + 1) / size - 1
    x, y = centres.view(1, 1, -1), centres.view(1, -1, 1)
    grid = torch.stack([cos * x - sin * y, sin * x + cos * y], -1)

    def warp_image(picked: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(picked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def warp_mask(picked: torch.Tensor) -> torch.Tensor:
        labels = F.grid_sample(
            picked.unsqueeze(1).float(), grid.float(), mode="nearest", padding_mode="zeros", align_corners=False
        )
        return labels.squeeze(1).round().to(picked.dtype)

    return _apply_to(image, chosen, warp_image), _apply_to(mask, chosen, warp_mask)


def _per_image(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Values of the chosen images as a ``(n, 1, 1, 1)`` tensor on ``x``'s device and dtype."""
    return values.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


class BatchAugment:
    """The training augmentations of ``data.transforms``, applied to whole batches.

    Args:
        data_cfg: the data section of the experiment (augmentation settings, normalisation, channels).
        intensity: apply the intensity augmentations; a reconstruction run turns them off, since its image is a
            regression target and the model is fed the label map.
    """

    def __init__(self, data_cfg: DataConfig, intensity: bool = True) -> None:
        self.cfg = data_cfg.transforms
        self.intensity = intensity
        self.black = black_level(data_cfg)
        self._maps: dict[tuple[int, int, str], torch.Tensor] = {}

    @property
    def enabled(self) -> bool:
        """Whether any augmentation can change a batch."""
        cfg = self.cfg
        geometry = (
            cfg.hflip > 0
            or cfg.vflip > 0
            or cfg.rot90 > 0
            or (cfg.rotate_prob > 0 and cfg.rotate_degrees > 0)
            or (cfg.scale_prob > 0 and cfg.scale != (1.0, 1.0))
        )
        light = cfg.brightness_prob > 0 or cfg.contrast_prob > 0 or cfg.gamma_prob > 0
        light = light or cfg.blur_prob > 0 or (cfg.noise_prob > 0 and cfg.noise_std > 0)
        return geometry or (self.intensity and light)

    def draw(self, batch_size: int, generator: torch.Generator) -> AugmentDraws:
        """Draw the random choices of one batch.

        Args:
            batch_size: images in the batch.
            generator: a CPU generator, e.g. from :func:`batch_generator`.

        Returns:
            The choices, on the CPU.
        """
        cfg = self.cfg
        u = dict(zip(_COLUMNS, torch.rand(len(_COLUMNS), batch_size, generator=generator), strict=True))
        noise_seed = torch.randint(0, 2**62, (), generator=generator)
        rotate = (u["rotate"] < cfg.rotate_prob) & (cfg.rotate_degrees > 0)
        zoom = (u["scale"] < cfg.scale_prob) & (cfg.scale != (1.0, 1.0))
        quarter_turns = (u["rot90_k"] * 3).long().clamp(max=2) + 1
        light = self.intensity
        return AugmentDraws(
            hflip=u["hflip"] < cfg.hflip,
            vflip=u["vflip"] < cfg.vflip,
            rot90_k=torch.where(u["rot90"] < cfg.rot90, quarter_turns, 0),
            affine=rotate | zoom,
            angle=torch.where(rotate, (2 * u["angle"] - 1) * math.radians(cfg.rotate_degrees), 0.0),
            scale=torch.where(zoom, _log_uniform(u["scale_value"], cfg.scale), 1.0),
            brightness=(u["brightness"] < cfg.brightness_prob) & light,
            brightness_value=_log_uniform(u["brightness_value"], cfg.brightness),
            contrast=(u["contrast"] < cfg.contrast_prob) & light,
            contrast_value=_log_uniform(u["contrast_value"], cfg.contrast),
            gamma=(u["gamma"] < cfg.gamma_prob) & light,
            gamma_value=_log_uniform(u["gamma_value"], cfg.gamma),
            blur=(u["blur"] < cfg.blur_prob) & light,
            blur_value=cfg.blur_sigma[0] + u["blur_value"] * (cfg.blur_sigma[1] - cfg.blur_sigma[0]),
            noise=(u["noise"] < cfg.noise_prob) & light & (cfg.noise_std > 0),
            noise_value=u["noise_value"] * cfg.noise_std,
            noise_seed=noise_seed,
        )

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch with choices drawn from ``generator``.

        Args:
            image: ``(B, C, S, S)`` float images, normalised.
            mask: ``(B, S, S)`` integer masks.
            generator: a CPU generator, e.g. from :func:`batch_generator`.

        Returns:
            The augmented image and mask, new tensors on the same device with the same dtypes.
        """
        return self.apply(image, mask, self.draw(image.shape[0], generator))

    def apply(self, image: torch.Tensor, mask: torch.Tensor, draws: AugmentDraws) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch with given choices.

        Args:
            image: ``(B, C, H, W)`` float images, normalised; all but flips and half turns need ``H == W``.
            mask: ``(B, H, W)`` integer masks.
            draws: from :meth:`draw` for this batch size.

        Returns:
            The augmented image and mask.

        Raises:
            ValueError: a quarter or three-quarter turn, free rotation or zoom of non-square images.
        """
        image, mask = self._geometry(image, mask, draws)
        return self._light(image, draws), mask

    def _geometry(
        self, image: torch.Tensor, mask: torch.Tensor, draws: AugmentDraws
    ) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = image.shape[-2:]
        if height != width and bool((draws.rot90_k % 2 == 1).any() | draws.affine.any()):
            raise ValueError(f"quarter turns, free rotation and zoom need square images, got {height}x{width}")
        image, mask = self._dihedral(image, mask, draws)
        if bool(draws.affine.any()):
            image, mask = _affine(image, mask, draws)
        return image, mask

    def _dihedral(
        self, image: torch.Tensor, mask: torch.Tensor, draws: AugmentDraws
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flips and quarter turns as one exact pixel permutation per image: a single gather per batch."""
        # A vertical flip is a horizontal flip plus a half turn, so "hflip, then vflip, then k quarter turns" is
        # "a horizontal flip if exactly one flip was drawn, then k + 2·vflip quarter turns".
        turns = (draws.rot90_k + 2 * draws.vflip) % 4
        element = 2 * turns + (draws.hflip ^ draws.vflip)
        if not bool(element.any()):
            return image, mask
        index = self._permutations(image.shape[-2], image.shape[-1], image.device)[element.to(image.device)]
        channels = image.shape[1]
        image = image.flatten(2).gather(2, index.unsqueeze(1).expand(-1, channels, -1)).view_as(image)
        return image, mask.flatten(1).gather(1, index).view_as(mask)

    def _permutations(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """``(8, H * W)`` source pixel of each output pixel, for ``2 * quarter_turns + horizontal_flip``."""
        key = (height, width, str(device))
        if key not in self._maps:
            base = torch.arange(height * width, device=device).view(height, width)
            maps = []
            for turns in range(4):
                for flip in (False, True):
                    source = base.flip(-1) if flip else base
                    # an odd number of turns of a non-square image is refused before this map could be used
                    odd = turns % 2 == 1 and height != width
                    maps.append(source if odd else torch.rot90(source, turns, dims=(-2, -1)))
            self._maps[key] = torch.stack(maps).flatten(1)
        return self._maps[key]

    def _light(self, image: torch.Tensor, draws: AugmentDraws) -> torch.Tensor:
        black = torch.tensor(self.black, dtype=image.dtype).view(1, -1, 1, 1).to(image.device)

        def brightness(x: torch.Tensor) -> torch.Tensor:
            return (x - black) * _per_image(draws.brightness_value[draws.brightness], x) + black

        def contrast(x: torch.Tensor) -> torch.Tensor:
            mean = x.mean((-2, -1), keepdim=True)
            return (x - mean) * _per_image(draws.contrast_value[draws.contrast], x) + mean

        def gamma(x: torch.Tensor) -> torch.Tensor:
            low, high = x.amin((-2, -1), keepdim=True), x.amax((-2, -1), keepdim=True)
            span = high - low
            unit = (x - low) / span.clamp_min(torch.finfo(x.dtype).tiny)
            return unit.clamp(0, 1).pow(_per_image(draws.gamma_value[draws.gamma], x)) * span + low

        def noise(x: torch.Tensor) -> torch.Tensor:
            device_generator = torch.Generator(device=x.device).manual_seed(int(draws.noise_seed))
            field = torch.randn(x.shape, generator=device_generator, device=x.device, dtype=x.dtype)
            std = x.std((-2, -1), keepdim=True) * _per_image(draws.noise_value[draws.noise], x)
            return x + field * std

        image = _apply_to(image, draws.brightness, brightness)
        image = _apply_to(image, draws.contrast, contrast)
        image = _apply_to(image, draws.gamma, gamma)
        image = _apply_to(
            image, draws.blur, lambda x: gaussian_blur(x, draws.blur_value[draws.blur], self.cfg.blur_sigma[1])
        )
        return _apply_to(image, draws.noise, noise)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Blur each image with its own Gaussian (separable, replicated border).

    Args:
        x: ``(n, C, H, W)`` images.
        sigma: ``(n,)`` standard deviations in pixels (CPU).
        max_sigma: the largest sigma the settings allow; the kernels are ``2 * ceil(3 * max_sigma) + 1`` wide so
            every batch has the same kernel shape.

    Returns:
        The blurred images.
    """
    n, channels, height, width = x.shape
    radius = max(math.ceil(3 * max_sigma), 1)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma.double().view(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(channels, 0).to(x.device, x.dtype)
    size = kernel.shape[1]
    flat = x.reshape(1, n * channels, height, width)
    flat = F.conv2d(
        F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.view(-1, 1, 1, size), groups=n * channels
    )
    flat = F.conv2d(
        F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel.view(-1, 1, size, 1), groups=n * channels
    )
    return flat.view(n, channels, height, width)
