"""ASC-Seg: Adaptive Structure alignment and Cross-scale decoding, docs/methods/asc_seg.md.

Official code: ILoveBSPC/ASC-Seg ``c1a81be`` (BSPC version) and ILoveIcme2025/ASC-Seg ``ebc1613`` (ICME version),
``models/Encoder.py``, ``Decoder.py``, ``Model.py``. :mod:`.encoder` holds the ASE block and its parts (IPCB, PMB,
DCB), :mod:`.decoder` the CNSD block and its parts (MSFA, DFB, SAB, CAB) and the FAC connector, :mod:`.common` the
layers both share, and :mod:`.model` :class:`ASCSeg` (registered as ``asc_seg``).
"""

from medseg.models.asc_seg.decoder import CAB, CNSD, DFB, FAC, MSFA, SAB
from medseg.models.asc_seg.encoder import DCB, IPCB, PMB, ASEBlock
from medseg.models.asc_seg.model import ASCSeg

__all__ = ["CAB", "CNSD", "DCB", "DFB", "FAC", "IPCB", "MSFA", "PMB", "SAB", "ASCSeg", "ASEBlock"]
