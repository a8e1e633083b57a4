"""Post-processing of predicted label maps: small components, the largest component and holes, per class.

It works on 2D label maps ``(H, W)`` and on label volumes ``(D, H, W)`` (components then connect across slices),
with numpy and SciPy only. Connected components are those of full connectivity (8 neighbours in 2D, 26 in 3D), as
MONAI's ``KeepLargestConnectedComponent`` by default; holes are background regions that no path of 4 (2D) or 6
(3D) neighbours connects to the border, as ``scipy.ndimage.binary_fill_holes``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PostProcess"]


@dataclass(frozen=True)
class PostProcess:
    """What to clean in a label map, applied to each foreground class in turn.

    Attributes:
        min_size: remove the components smaller than this many pixels (voxels); 0 keeps them all.
        largest_component: keep only the largest component of each class.
        fill_holes: give each class the background regions it encloses.
    """

    min_size: int = 0
    largest_component: bool = False
    fill_holes: bool = False

    @property
    def active(self) -> bool:
        """Whether any step is on."""
        return bool(self.min_size) or self.largest_component or self.fill_holes

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        """Clean a label map: removed pixels become background (0), filled holes take the enclosing class.

        Args:
            labels: ``(H, W)`` or ``(D, H, W)`` integer class indices, 0 the background.

        Returns:
            The cleaned label map (a new array when any step is on), same shape and dtype.
        """
        if not self.active:
            return labels
        from scipy import ndimage  # imported here: only post-processing needs SciPy

        out = labels.copy()
        connectivity = ndimage.generate_binary_structure(labels.ndim, labels.ndim)
        for value in np.unique(labels):
            if value == 0:
                continue
            mask = out == value
            if self.min_size or self.largest_component:
                components, count = ndimage.label(mask, structure=connectivity)
                if count:
                    sizes = np.bincount(components.ravel())
                    sizes[0] = 0
                    keep = sizes >= self.min_size
                    if self.largest_component:
                        keep &= np.arange(len(sizes)) == int(sizes.argmax())
                    keep[0] = False
                    removed = mask & ~keep[components]
                    out[removed] = 0
                    mask &= ~removed
            if self.fill_holes:
                out[ndimage.binary_fill_holes(mask) & (out == 0)] = value
        return out
